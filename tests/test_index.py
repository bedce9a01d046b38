"""The run index (store/index.py): listing through SQLite gives what the folders say, heals itself,
survives kill -9 and two writers, and is rebuilt when deleted or damaged."""

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cifar_app.core.records import EpochStats
from cifar_app.core.settings import TrainSettings
from cifar_app.store import index
from cifar_app.store.formats import INDEX
from cifar_app.store.index import RunIndex
from cifar_app.store.logreader import LogCache
from cifar_app.store.recorder import Recorder
from cifar_app.store.run import Run, RunNotFound
from cifar_app.store.runstore import RunStore
from cifar_app.store.states import RunState


@pytest.fixture(autouse=True)
def not_racy(monkeypatch):
    """Files changed a moment ago are stamped as they are (the racy rule has its own test)."""
    monkeypatch.setattr(index, "RACY_S", 0.0)


def _epoch(i: int, acc: float = 0.5) -> EpochStats:
    return EpochStats(epoch=i, train_loss=1.0, train_acc=acc, test_loss=1.0, test_acc=acc, lr=0.1,
                      seconds=2.0, images_per_s=100.0)


def _store(tmp_path, n: int = 3) -> tuple[RunStore, list[str]]:
    store = RunStore(tmp_path / "runs", reference_root=None)
    ids = []
    for i in range(n):
        run = store.create(TrainSettings(norm=["batch", "group", "layer"][i % 3], epochs=3), label=f"run {i}")
        run.append_metrics(_epoch(1, 0.1 * (i + 1)))
        run.update_status(state=RunState.COMPLETED)
        ids.append(run.id)
    return store, ids


def _direct(store: RunStore) -> list[dict]:
    """The summaries read from the folders, without the index."""
    return [r.summary().as_dict() for r in store.list()]


def _listed(store: RunStore) -> list[dict]:
    return [s.as_dict() for s in store.summaries()]


class _NoReads:
    """Fails the test if any run is summarized from its files."""

    def __init__(self, monkeypatch):
        monkeypatch.setattr(Run, "raw_summary", self._fail)

    @staticmethod
    def _fail(run):
        raise AssertionError(f"{run.id} was read from its files")


def test_a_listing_matches_the_folders_and_an_unchanged_store_reads_no_run(tmp_path, monkeypatch):
    store, _ = _store(tmp_path, 4)
    assert _listed(store) == _direct(store)
    assert (store.root / INDEX).is_file()
    _NoReads(monkeypatch)
    assert len(_listed(store)) == 4  # every row came from the index


def test_a_run_changed_behind_the_index_is_seen_on_the_next_listing(tmp_path):
    store, ids = _store(tmp_path, 3)
    store.summaries()
    # a file edited by hand: the label in status.json, the log grown by an epoch
    status_path = store.root / ids[0] / "status.json"
    st = json.loads(status_path.read_text())
    status_path.write_text(json.dumps({**st, "label": "edited by hand"}))
    store.get(ids[1]).append_metrics(_epoch(2, 0.9))
    # a folder copied in by hand, one removed
    shutil.copytree(store.root / ids[2], store.root / "20990101-000000-copy-abcdef")
    shutil.rmtree(store.root / ids[2])
    listed = {s.id: s for s in store.summaries()}
    assert listed[ids[0]].label == "edited by hand"
    assert listed[ids[1]].epoch == 2 and listed[ids[1]].best_test_acc == 0.9
    assert "20990101-000000-copy-abcdef" in listed and ids[2] not in listed
    assert _listed(store) == _direct(store)
    with contextlib.closing(sqlite3.connect(store.root / INDEX, isolation_level=None)) as con:
        assert sorted(r[0] for r in con.execute("SELECT id FROM runs")) == sorted(listed)


def test_a_damaged_run_is_listed_as_damaged(tmp_path):
    store, ids = _store(tmp_path, 2)
    store.summaries()
    with open(store.root / ids[0] / "metrics.jsonl", "a") as f:
        f.write('{"type": "epoch", "epoch": "two"}\n')
    (store.root / ids[1] / "settings.json").write_text("{nope")
    listed = {s.id: s for s in store.summaries()}
    assert listed[ids[0]].damaged and "metrics.jsonl" in listed[ids[0]].error
    assert listed[ids[1]].damaged and "settings.json" in listed[ids[1]].error
    assert {s.id: s.damaged for s in store.summaries()} == {ids[0]: True, ids[1]: True}


@pytest.mark.parametrize("damage", ["deleted", "garbage", "truncated", "foreign table", "bad row"])
def test_a_deleted_or_damaged_index_is_rebuilt_and_nothing_is_lost(tmp_path, damage):
    store, _ = _store(tmp_path, 3)
    expected = _direct(store)
    assert _listed(store) == expected
    path = store.root / INDEX
    for suffix in ("-wal", "-shm"):  # a checkpointed file, as after the last connection closed
        assert not os.path.exists(f"{path}{suffix}")
    if damage == "deleted":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"\x00not a database\xff" * 300)
    elif damage == "truncated":
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 3 + 7])
    elif damage == "foreign table":
        path.unlink()
        with sqlite3.connect(path) as con:
            con.execute("CREATE TABLE runs (x)")
            con.execute("PRAGMA user_version=1")
    else:
        with sqlite3.connect(path) as con:
            con.execute("UPDATE runs SET summary = '{\"id\": 1}'")
    assert _listed(store) == expected
    if damage in ("garbage", "truncated", "foreign table"):
        assert store.index_notice and "rebuilt" in store.index_notice, damage
    assert _listed(store) == expected and store.index_notice is None  # healed


def test_an_active_run_whose_process_died_is_listed_as_interrupted_without_any_file_changing(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings())
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    try:
        run.heartbeat(state=RunState.RUNNING, pid=proc.pid)
        assert store.summaries()[0].status == RunState.RUNNING
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        listed = store.summaries()[0]
        assert listed.status == RunState.INTERRUPTED and "ended without finishing" in listed.error
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_the_recorder_keeps_its_runs_row_current(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings(epochs=2))
    store.summaries()
    rec = Recorder(run)
    rec.started()
    rec.epoch(_epoch(1, 0.4))
    rec.epoch(_epoch(2, 0.6))
    rec.stopped()
    _NoReads(monkeypatch)  # the recorder wrote the row: the listing has nothing to redo
    (listed,) = store.summaries()
    assert (listed.status, listed.epoch, listed.best_test_acc) == (RunState.STOPPED, 2, 0.6)


WRITERS = textwrap.dedent("""
    import os, sys, time
    from cifar_app.core.records import EpochStats
    from cifar_app.store.recorder import Recorder
    from cifar_app.store.runstore import RunStore
    role, root, ids = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    store = RunStore(root, reference_root=None)
    for run_id in ids:
        run = store.get(run_id)
        if role == "worker":  # a worker's epochs, each indexed under the status lock
            rec = Recorder(run)
            rec.started()
            for e in range(1, 21):
                rec.epoch(EpochStats(epoch=e, train_loss=1.0, train_acc=e / 20, test_loss=1.0,
                                     test_acc=e / 20, lr=0.1, seconds=1.0, images_per_s=1.0))
            rec._end("completed")
        else:  # renames as the Runs page does, and lists as a page does
            for i in range(1, 31):
                store.rename(run_id, f"name {i}")
                if i % 5 == 0:
                    store.summaries()
""")


def test_a_workers_epochs_and_a_rename_at_once_lose_nothing(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    ids = [store.create(TrainSettings(epochs=20)).id for _ in range(8)]
    store.summaries()
    procs = [subprocess.Popen([sys.executable, "-c", WRITERS, role, str(store.root), ",".join(ids)])
             for role in ("worker", "renamer")]
    for p in procs:
        assert p.wait(timeout=240) == 0
    listed = {s.id: s for s in store.summaries()}
    assert {(s.status, s.epoch, s.best_test_acc, s.label) for s in listed.values()} == {
        (RunState.COMPLETED, 20, 1.0, "name 30")}
    assert _listed(store) == _direct(store)


def test_a_write_between_the_stamp_and_the_read_is_seen_on_the_next_listing(tmp_path, monkeypatch):
    """The race two writers make, made certain: a rename lands while the listing reads the run."""
    store, (run_id,) = _store(tmp_path, 1)
    read = Run.raw_summary

    def read_during_a_rename(run):
        out = read(run)
        Run.raw_summary = read  # once
        store.rename(run_id, "renamed meanwhile")
        return out

    monkeypatch.setattr(Run, "raw_summary", read_during_a_rename)
    assert store.summaries()[0].label == "run 0"  # read before the rename
    assert store.summaries()[0].label == "renamed meanwhile"


KILLED = textwrap.dedent("""
    import sys
    from cifar_app.store.runstore import RunStore
    store = RunStore(sys.argv[1], reference_root=None)
    runs = store.list()
    i = 0
    while True:  # every listing rewrites every row: each run's status changed since
        i += 1
        for run in runs:
            run.update_status(label=f"pass {i}")
        store.summaries()
        print(i, flush=True)
""")


def test_the_index_survives_kill_9_in_the_middle_of_an_update(tmp_path):
    store, _ = _store(tmp_path, 60)
    trials = 10
    for trial in range(trials):
        proc = subprocess.Popen([sys.executable, "-c", KILLED, str(store.root)], stdout=subprocess.PIPE,
                                text=True)
        assert proc.stdout.readline()  # one whole pass done
        start = time.monotonic()
        assert proc.stdout.readline()  # and a second, timed
        time.sleep((time.monotonic() - start) * trial / trials)  # a different moment of the third
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with contextlib.closing(sqlite3.connect(store.root / INDEX, isolation_level=None)) as con:
            assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert _listed(store) == _direct(store)
        assert store.index_notice is None  # consistent, not rebuilt


def test_a_read_only_or_missing_runs_folder_is_listed_from_the_folders(tmp_path, monkeypatch):
    store, _ = _store(tmp_path, 2)
    monkeypatch.setattr(RunIndex, "_connect", lambda self: None)  # as where it cannot be opened
    assert _listed(store) == _direct(store)
    missing = RunStore(tmp_path / "nowhere", reference_root=store.root)
    assert [s.id for s in missing.summaries()] == [r.id for r in store.list()][::-1]
    assert not (tmp_path / "nowhere").exists()


def test_the_log_cache_stays_within_its_byte_bound_over_a_scan_of_more_runs_than_it_holds(tmp_path):
    lines = "".join(json.dumps({"k": i}) + "\n" for i in range(200)).encode()
    paths = []
    for i in range(40):
        paths.append(tmp_path / f"{i}.jsonl")
        paths[-1].write_bytes(lines)
    cache = LogCache(max_bytes=10 * len(lines) + 5)  # holds 10 of the 40
    parse = lambda obj: ("k", obj["k"], obj)  # noqa: E731
    for _ in range(2):
        for p in paths:
            assert len(cache.read(p, parse, lambda g: g["k"], list)) == 200
            assert cache.held_bytes <= cache.max_bytes
    assert len(cache._states) == 10 and cache.held_bytes == 10 * len(lines)
    big = tmp_path / "big.jsonl"
    big.write_bytes(lines * 20)  # larger than the bound: read, returned, not kept
    assert len(cache.read(big, parse, lambda g: g["k"], list)) == 200
    assert cache.held_bytes <= cache.max_bytes
    grown = paths[-1]  # a held log that grows is held by its new size
    with open(grown, "ab") as f:
        f.write(b'{"k": 999}\n')
    cache.read(grown, parse, lambda g: g["k"], list)
    assert cache.held_bytes == sum(s.size for s in cache._states.values()) <= cache.max_bytes


def test_a_same_size_edit_with_its_old_mtime_put_back_is_seen(tmp_path):
    """As `cp -p`, `touch -r` or `rsync --inplace` leave a file: the inode, size and mtime of
    before; its ctime says it changed."""
    store, (run_id,) = _store(tmp_path, 1)
    store.summaries()
    path = store.root / run_id / "status.json"
    before = os.stat(path)
    with open(path, "r+") as f:  # in place: the same inode
        text = f.read().replace('"run 0"', '"run 9"')
        f.seek(0)
        f.write(text)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(path).st_size == before.st_size and os.stat(path).st_mtime_ns == before.st_mtime_ns
    assert store.summaries()[0].label == "run 9"


def test_files_changed_a_moment_ago_are_stamped_so_the_row_is_redone(tmp_path, monkeypatch):
    monkeypatch.setattr(index, "RACY_S", 0.05)
    store, (run_id,) = _store(tmp_path, 1)
    folder = store.root / run_id
    now = os.stat(folder / "status.json").st_mtime
    assert index.stamp(folder, now) != index.stamp(folder, now)  # racy: equal to nothing
    assert index.stamp(folder, now + 1) == index.stamp(folder, now + 1)


def test_a_model_that_appears_alone_is_seen(tmp_path):
    store, (run_id,) = _store(tmp_path, 1)
    assert not store.summaries()[0].has_model
    (store.root / run_id / "model.pt").write_bytes(b"x")
    assert store.summaries()[0].has_model


def test_odd_pids_get_the_same_state_from_the_index_as_from_the_folder(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    for pid in ("1234", True, 1234.0, [1], None, os.getpid()):
        store.create(TrainSettings()).update_status(state=RunState.RUNNING, pid=pid, heartbeat=time.time())
    store.summaries()
    assert [s.status for s in store.summaries()] == [s["status"] for s in _direct(store)]
    assert {s.status for s in store.summaries()} == {RunState.RUNNING, RunState.INTERRUPTED}


@pytest.mark.parametrize("row", [
    "[" * 100_000 + "]" * 100_000,  # deep enough to break a recursive decoder
    json.dumps({"id": "someone-else"}),
    "wrong types",
])
def test_a_hostile_row_is_made_again_from_the_folder(tmp_path, row):
    store, ids = _store(tmp_path, 2)
    expected = _direct(store)
    store.summaries()
    with contextlib.closing(sqlite3.connect(store.root / INDEX, isolation_level=None)) as con:
        if row == "wrong types":
            good = json.loads(con.execute("SELECT summary FROM runs").fetchone()[0])
            for field, bad in (("epoch", "two"), ("best_test_acc", "high"), ("reference", 1),
                               ("created", "yesterday"), ("id", ids[1])):
                con.execute("UPDATE runs SET summary = ? WHERE id = ?",
                            (json.dumps({**good, field: bad}), ids[0]))
                assert _listed(store) == expected, field
            return
        con.execute("UPDATE runs SET summary = ?", (row,))
    assert _listed(store) == expected


def test_the_recorder_waits_for_a_busy_index_only_a_moment(tmp_path):
    """A listing writing the index must not hold up training under the run's status lock."""
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings(epochs=2))
    store.summaries()
    holder = sqlite3.connect(store.root / INDEX, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a writer in the middle of a long transaction
    try:
        t0 = time.monotonic()
        Recorder(run).epoch(_epoch(1, 0.4))
        assert time.monotonic() - t0 < index.PUT_WAIT_S + 1.0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert store.summaries()[0].epoch == 1  # the skipped write is made good by the listing


def test_an_index_damaged_beyond_its_header_is_rebuilt(tmp_path):
    store, _ = _store(tmp_path, 40)
    expected = _direct(store)
    store.summaries()
    path = store.root / INDEX
    data = bytearray(path.read_bytes())
    assert len(data) > 3 * 4096
    data[-4096:] = os.urandom(4096)  # the last page: the first rows still read
    path.write_bytes(bytes(data))
    assert _listed(store) == expected and "rebuilt" in store.index_notice
    assert _listed(store) == expected and store.index_notice is None


def test_rows_do_not_depend_on_how_the_folder_is_spelled_and_unlisted_ones_are_dropped(tmp_path, monkeypatch):
    store, (run_id,) = _store(tmp_path, 1)
    refs = RunStore(tmp_path / "refs", reference_root=None)
    refs.create(TrainSettings())
    monkeypatch.chdir(tmp_path)
    RunStore("runs", reference_root=tmp_path / "refs").summaries()
    RunStore(tmp_path / "runs", reference_root=Path("refs")).summaries()
    Recorder(store.get(run_id)).epoch(_epoch(2, 0.7))
    with contextlib.closing(sqlite3.connect(store.root / INDEX, isolation_level=None)) as con:
        folders = sorted(r[0] for r in con.execute("SELECT folder FROM runs"))
    assert folders == ["", os.path.realpath(tmp_path / "refs")]
    RunStore("runs", reference_root=None).summaries()
    with contextlib.closing(sqlite3.connect(store.root / INDEX, isolation_level=None)) as con:
        assert [r[0] for r in con.execute("SELECT folder FROM runs")] == [""]


def test_an_index_of_a_newer_version_of_the_app_is_left_alone(tmp_path):
    store, _ = _store(tmp_path, 2)
    store.summaries()
    # its own layout, which this app cannot read
    with contextlib.closing(sqlite3.connect(store.root / INDEX, isolation_level=None)) as con:
        con.execute("DROP TABLE runs")
        con.execute("CREATE TABLE runs (what_a_newer_app_keeps)")
        con.execute(f"PRAGMA user_version={index.SCHEMA_VERSION + 1}")
    before = (store.root / INDEX).read_bytes()
    assert _listed(store) == _direct(store) and store.index_notice is None
    assert (store.root / INDEX).read_bytes() == before


def test_a_folder_with_a_directory_for_a_run_file_is_not_a_run(tmp_path):
    store, _ = _store(tmp_path, 1)
    (store.root / "20990101-000000-odd-abcdef" / "metrics.jsonl").mkdir(parents=True)
    assert [s.id for s in store.summaries()] == [r.id for r in store.list()]


def test_one_runs_summary_comes_from_its_row_until_its_files_change(tmp_path, monkeypatch):
    store, ids = _store(tmp_path, 3)
    assert [store.summary(i).as_dict() for i in ids] == [store.get(i).summary().as_dict() for i in ids]
    read = Run.raw_summary
    with monkeypatch.context() as m:
        _NoReads(m)
        assert store.summary(ids[1]).label == "run 1"  # its row
    store.rename(ids[1], "renamed")
    assert store.summary(ids[1]).label == "renamed"
    assert Run.raw_summary is read
    with pytest.raises(RunNotFound):
        store.summary("20990101-000000-none-000000")


def test_the_cli_lists_through_the_index_and_says_when_it_rebuilt_it(tmp_path):
    store, ids = _store(tmp_path, 2)
    cmd = [sys.executable, "-m", "cifar_app", "runs", "--json", "--runs-dir", str(store.root)]
    env = {**os.environ, "CIFAR_APP_REFERENCE_RUNS": ""}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    assert [r["id"] for r in json.loads(first.stdout)] == [r.id for r in store.list()] and not first.stderr
    (store.root / INDEX).write_bytes(b"garbage" * 1000)
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
    assert json.loads(again.stdout) == json.loads(first.stdout)
    assert again.stderr.startswith("note: the run index") and "rebuilt" in again.stderr
    probe = "import sys, cifar_app.cli as c; sys.argv[1:] = ['runs', '--runs-dir', sys.argv[1]]; " \
            "c.main(sys.argv[1:]); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe, str(store.root)], capture_output=True, text=True,
                         env=env, check=True)
    assert out.stdout.strip().endswith("False")  # listing needs no torch


def test_summarizing_runs_anew_needs_no_torch_either(tmp_path):
    """A new store, an imported or hand-copied run, a rebuilt index: each run's row is made from
    its files, and its settings are validated, parameter budget included. That imported torch (2 s
    of CPU in the dashboard's warm-up on a fresh store: the shipped reference runs' rows)."""
    store, _ = _store(tmp_path, 2)
    (store.root / INDEX).unlink(missing_ok=True)
    probe = "import sys; from cifar_app.store.runstore import RunStore; " \
            "rows = RunStore(__import__('pathlib').Path(sys.argv[1])).summaries(); " \
            "print(len(rows), sum(r.reference for r in rows), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe, str(store.root)], capture_output=True, text=True,
                         check=True,
                         env={k: v for k, v in os.environ.items() if k != "CIFAR_APP_REFERENCE_RUNS"})
    runs, references, torch_loaded = out.stdout.split()
    assert int(runs) == 2 + int(references) and int(references) >= 4 and torch_loaded == "False", out.stdout


# ---------------------------------------------------------------- a store that lists again and again
def _server_store(root: Path, recheck_s: float = 3600.0) -> RunStore:
    """The dashboard's kind of store (``recheck_s``), over the same folder."""
    return RunStore(root, reference_root=None, recheck_s=recheck_s)


def _count_stamps(monkeypatch) -> list[str]:
    stamped: list[str] = []
    real = index.stamp

    def counting(folder, now=None):
        stamped.append(Path(folder).name)
        return real(folder, now)

    monkeypatch.setattr(index, "stamp", counting)
    return stamped


def test_a_store_that_lists_again_and_again_stamps_only_the_active_runs(tmp_path, monkeypatch):
    store, ids = _store(tmp_path, 4)
    server = _server_store(store.root)
    active = store.create(TrainSettings(epochs=3), label="training")
    active.heartbeat(state=RunState.RUNNING, pid=os.getpid())
    expected = _direct(store)
    assert _listed(server) == expected
    stamped = _count_stamps(monkeypatch)
    _NoReads(monkeypatch)
    monkeypatch.setattr(RunIndex, "_connect", lambda *a, **k: pytest.fail("the index file was opened"))
    assert _listed(server) == expected
    assert stamped == [active.id]  # the quiet runs: only their status file's stat


def test_a_store_that_lists_again_and_again_sees_at_once_what_the_app_changes_from_another_process(tmp_path):
    store, ids = _store(tmp_path, 4)
    server = _server_store(store.root)
    server.summaries()
    other = RunStore(store.root, reference_root=None)  # as the CLI or a worker would
    other.rename(ids[0], "renamed elsewhere")
    other.delete(ids[1])
    other.get(ids[2]).update_status(state=RunState.QUEUED, pid=os.getpid())  # resumed elsewhere
    new = other.create(TrainSettings(norm="layer"), label="new elsewhere")
    listed = {s.id: s for s in server.summaries()}
    assert listed[ids[0]].label == "renamed elsewhere"
    assert ids[1] not in listed and new.id in listed
    assert listed[ids[2]].status == RunState.QUEUED
    other.get(ids[2]).append_metrics(_epoch(2, 0.95))  # an active run's epoch, without a status change
    assert {s.id: s.best_test_acc for s in server.summaries()}[ids[2]] == 0.95
    assert _listed(server) == _direct(store)
    with contextlib.closing(sqlite3.connect(store.root / INDEX, isolation_level=None)) as con:
        assert sorted(r[0] for r in con.execute("SELECT id FROM runs")) == sorted(listed)


def test_an_edit_by_hand_of_a_finished_runs_log_is_seen_within_recheck_s(tmp_path):
    store, ids = _store(tmp_path, 2)
    server = _server_store(store.root, recheck_s=0.5)
    server.summaries()
    with open(store.root / ids[0] / "metrics.jsonl", "a") as f:  # in place: the status file is as it was
        f.write(json.dumps(_epoch(2, 0.97).to_record()) + "\n")
    deadline = time.monotonic() + 10
    while {s.id: s.best_test_acc for s in server.summaries()}[ids[0]] != 0.97:
        assert time.monotonic() < deadline, "the edit was never seen"
        time.sleep(0.05)
    assert _listed(server) == _direct(store)


def test_a_store_that_lists_again_and_again_writes_a_new_index_back_unread(tmp_path, monkeypatch):
    store, ids = _store(tmp_path, 3)
    server = _server_store(store.root)
    expected = _listed(server)
    (store.root / INDEX).unlink()
    _NoReads(monkeypatch)
    assert _listed(server) == expected
    with contextlib.closing(sqlite3.connect(store.root / INDEX, isolation_level=None)) as con:
        assert sorted(r[0] for r in con.execute("SELECT id FROM runs")) == sorted(ids)
    monkeypatch.undo()
    assert _listed(RunStore(store.root, reference_root=None)) == expected  # rows a new process trusts


def test_a_rebuild_notice_is_kept_for_every_page_of_the_dashboards_store_for_a_while(tmp_path):
    store, ids = _store(tmp_path, 2)
    server = _server_store(store.root)
    expected = _listed(server)
    (store.root / INDEX).write_bytes(b"garbage" * 1000)
    server.warm()  # the server's own first listing: no page has asked yet
    for _ in range(2):  # e.g. Compare, then the Runs page
        assert _listed(server) == expected and "rebuilt" in server.index_notice
    (store.root / INDEX).write_bytes(b"garbage" * 1000)
    cli = RunStore(store.root, reference_root=None)  # one listing, one notice
    assert _listed(cli) == expected and "rebuilt" in cli.index_notice
    assert _listed(cli) == expected and cli.index_notice is None


def _rows(store: RunStore) -> list[str]:
    with contextlib.closing(sqlite3.connect(store.root / INDEX, isolation_level=None)) as con:
        return sorted(r[0] for r in con.execute("SELECT id FROM runs"))


def test_rows_a_failed_write_left_out_are_written_by_a_later_listing(tmp_path, monkeypatch):
    store, ids = _store(tmp_path, 4)
    server = _server_store(store.root)
    real = RunIndex._write

    def locked(con, rows):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(RunIndex, "_write", staticmethod(locked))
    expected = _listed(server)
    assert _rows(store) == []
    monkeypatch.setattr(RunIndex, "_write", staticmethod(real))
    assert _listed(server) == expected and _rows(store) == sorted(ids)


@pytest.mark.parametrize("how", ["damaged in place", "made again by a worker"])
def test_an_index_file_made_again_under_a_warm_store_gets_every_row(tmp_path, how):
    store, ids = _store(tmp_path, 4)
    server = _server_store(store.root)
    server.summaries()
    path = store.root / INDEX
    other = RunStore(store.root, reference_root=None)
    if how == "damaged in place":  # the header intact: the file looks like the same one
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 3 + 7])
        other.rename(ids[0], "renamed")  # a change, so the listing needs the table
    else:  # deleted, then a worker's epoch makes a new file with its own row (maybe the same inode)
        path.unlink()
        RunIndex(store.root).put(other.get(ids[0]))
    assert _listed(server) == _direct(store)
    assert _rows(store) == sorted(ids)


def test_a_label_changed_while_a_listing_reads_is_seen_by_the_next(tmp_path, monkeypatch):
    store, ids = _store(tmp_path, 3)
    store.summaries()  # the rows are in the table: the server trusts them
    server = _server_store(store.root)
    other = RunStore(store.root, reference_root=None)
    real = index.stamp

    def then_renamed(folder, now=None):
        mark = real(folder, now)
        if Path(folder).name == ids[0] and not os.environ.get("RENAMED"):
            monkeypatch.setenv("RENAMED", "1")
            other.rename(ids[0], "renamed while listed")  # between its stamp and its row's read
        return mark

    monkeypatch.setattr(index, "stamp", then_renamed)
    server.summaries()
    monkeypatch.setattr(index, "stamp", real)
    assert {s.id: s.label for s in server.summaries()}[ids[0]] == "renamed while listed"


class _CoarseClock:
    """``os`` as index.py sees it on a file system whose timestamps tick every ``TICK`` ns."""

    TICK = 200_000_000

    def __getattr__(self, name):
        return getattr(os, name)

    def stat(self, path, *args, **kwargs):
        st = os.stat(path, *args, **kwargs)
        m, c = (t // self.TICK * self.TICK for t in (st.st_mtime_ns, st.st_ctime_ns))
        return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, st.st_uid, st.st_gid,
                               st.st_size, m // 10**9, m // 10**9, c // 10**9, m / 1e9, m / 1e9, c / 1e9,
                               0, m, m, c))


def test_a_run_added_in_the_tick_of_the_last_scan_is_not_hidden(tmp_path, monkeypatch):
    store, _ = _store(tmp_path, 1)
    monkeypatch.setattr(index, "os", _CoarseClock())
    monkeypatch.setattr(index, "RACY_S", 2 * _CoarseClock.TICK / 1e9)  # as sized for the tick
    server = _server_store(store.root)
    staging = tmp_path / "staging"
    for attempt in range(20):
        made = []
        for name in (f"20990101-000000-batch-a{attempt:05d}", f"20990101-000000-batch-b{attempt:05d}"):
            shutil.copytree(store.root / store.list()[-1].id, staging / name)
            made.append(name)
        while time.time_ns() % _CoarseClock.TICK > _CoarseClock.TICK // 10:  # the start of a tick
            pass
        start = time.time_ns() // _CoarseClock.TICK
        os.rename(staging / made[0], store.root / made[0])
        server.summaries()  # scans the folder while its mtime is this tick
        os.rename(staging / made[1], store.root / made[1])
        if time.time_ns() // _CoarseClock.TICK == start:
            break  # the second run came in the same tick: the folder's stat did not move
    else:
        pytest.skip("this machine never did it within one tick")
    deadline = time.monotonic() + 5
    while time.time() - (start + 1) * _CoarseClock.TICK / 1e9 < index.RACY_S:  # the tick is no longer recent
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert made[1] in {s.id for s in server.summaries()}


def test_a_wall_clock_set_back_does_not_stretch_recheck_s(tmp_path, monkeypatch):
    store, ids = _store(tmp_path, 2)
    server = _server_store(store.root, recheck_s=0.5)
    server.summaries()
    with open(store.root / ids[0] / "metrics.jsonl", "a") as f:
        f.write(json.dumps(_epoch(2, 0.97).to_record()) + "\n")
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3600)  # NTP steps the clock back an hour
    deadline = time.monotonic() + 10
    while {s.id: s.best_test_acc for s in server.summaries()}[ids[0]] != 0.97:
        assert time.monotonic() < deadline, "the edit was never seen"
        time.sleep(0.05)


def test_a_runs_row_says_it_has_probe_records_from_its_first_epoch(tmp_path, monkeypatch):
    """The Inside page and the Runs page's *Look inside* take it from the row, not from a stat of
    each run's probe log: every row the recorder writes once an epoch has ended says so (the first
    record, of the initial weights, comes before it), and a run without records says not."""
    from cifar_app.store.jobs import execute_run
    from tests.conftest import synthetic_data

    rows = []
    real = RunIndex._row

    def spy(self, run, known_stamp=None):
        row = real(self, run, known_stamp)
        rows.append(json.loads(row[4]))
        return row

    monkeypatch.setattr(RunIndex, "_row", spy)
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings(norm="group", epochs=2, batch_size=50, max_lr=0.05, device="cpu"))
    execute_run(store, run.id, data=synthetic_data(200, 300))
    after_an_epoch = [r["has_probes"] for r in rows if r["id"] == run.id and r["epoch"] >= 1]
    assert len(after_an_epoch) >= 2 and all(after_an_epoch)
    plain = store.create(TrainSettings(epochs=2))
    assert {s.id: s.has_probes for s in store.summaries()} == {run.id: True, plain.id: False}
