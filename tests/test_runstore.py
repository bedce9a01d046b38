import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cifar_app.core.records import BatchStats, EpochStats
from cifar_app.core.settings import TrainSettings
from cifar_app.lab.analysis import run_evaluation
from cifar_app.store.run import ReadOnlyRun, RunNotFound
from cifar_app.store.runstore import RunStore
from tests.conftest import wait_for


def epoch(n: int, acc: float) -> EpochStats:
    return EpochStats(n, 1.0, 0.5, 1.1, acc, 2.0, 100.0, 0.1)


def test_create_list_get_rename_delete(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    a = store.create(TrainSettings(norm="batch", epochs=2), label="first")
    b = store.create(TrainSettings(norm="group", epochs=3))
    assert {r.id for r in store.list()} == {a.id, b.id}
    assert store.get(a.id).settings().epochs == 2
    assert a.status()["state"] == "queued"  # not started yet, not "interrupted"
    assert a.summary().label == "first" and a.summary().params < 50_000
    store.rename(b.id, "  my GN run  ")
    assert store.get(b.id).label == "my GN run"
    with pytest.raises(ValueError):
        store.rename(b.id, "   ")
    a.update_status(state="completed", pid=None)
    store.delete(a.id)
    assert [r.id for r in store.list()] == [b.id]


@pytest.mark.parametrize("bad", ["../etc", "..", "a/b", "", "UPPER", "x" * 80, "/abs", "run\x00"])
def test_ids_from_user_text_never_reach_the_filesystem(tmp_path, bad):
    store = RunStore(tmp_path / "runs", reference_root=None)
    with pytest.raises(RunNotFound):
        store.get(bad)


def test_a_run_whose_process_died_is_reported_interrupted(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings())
    run.update_status(state="running", pid=os.getpid(), heartbeat=time.time())
    assert run.status()["state"] == "running"
    run.update_status(pid=2**22 + 12345)  # no such process
    assert run.status()["state"] == "interrupted"
    run.update_status(pid=os.getpid(), heartbeat=time.time() - 3600)  # alive but silent for an hour
    assert run.status()["state"] == "interrupted"


def test_torn_last_line_is_skipped_and_later_records_win(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings())
    run.append_metrics(epoch(1, 0.1), BatchStats(1, 1, 1, 4, 2.0, 0.1))
    run.append_metrics(epoch(1, 0.2))
    with open(run.path / "metrics.jsonl", "a") as f:
        f.write('{"type": "epoch", "epoch": 2, "test_a')
    m = run.metrics()
    assert [e.test_acc for e in m.epochs] == [0.2] and len(m.batches) == 1


def test_reference_runs_are_listed_and_read_only(tmp_path):
    refs = tmp_path / "refs"
    user = RunStore(tmp_path / "runs", reference_root=None).create(TrainSettings(norm="layer"))
    (refs / "ref-layer").mkdir(parents=True)
    for name in ("settings.json", "status.json"):
        (refs / "ref-layer" / name).write_bytes((user.path / name).read_bytes())
    store = RunStore(tmp_path / "runs", reference_root=refs)
    ref = store.get("ref-layer")
    assert ref.reference and [r.reference for r in store.list()] == [False, True]
    with pytest.raises(ReadOnlyRun):
        store.delete("ref-layer")
    with pytest.raises(ReadOnlyRun):
        ref.request_stop()


def test_a_killed_writer_leaves_readable_files(tmp_path):
    """kill -9 a process that rewrites status.json and appends metrics as fast as it can."""
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings())
    script = textwrap.dedent(f"""
        import os
        from cifar_app.core.records import BatchStats
        from cifar_app.store.runstore import RunStore
        run = RunStore({str(store.root)!r}, reference_root=None).get({run.id!r})
        i = 0
        while True:
            i += 1
            run.update_status(state="running", pid=os.getpid(), step=i, blob="x" * 5000)
            run.append_metrics(BatchStats(i, 1, i, 10**9, 1.0, 0.1, t=1.0 + i / 7))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script])
    wait_for(lambda: len(run.metrics().batches) >= 50, 30, "50 batches from the writer")
    for _ in range(20):  # readers racing the writer never see a torn status file
        assert json.loads((run.path / "status.json").read_text())["state"] == "running"
    assert run.status()["state"] == "running"  # its process is alive
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    status = json.loads((run.path / "status.json").read_text())
    steps = [b.step for b in run.metrics().batches]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 50
    assert status["step"] >= steps[-1] - 1
    assert run.status()["state"] == "interrupted"  # its process is gone


RACE = textwrap.dedent("""
    import os, sys, time
    from cifar_app.store.runstore import RunStore
    role, root, ids, done_dir = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4]
    store = RunStore(root, reference_root=None)
    for run_id in ids:
        run = store.get(run_id)
        if role == "worker":  # heartbeats as fast as it can, then completes, as the worker does
            for i in range(150):
                run.heartbeat(state="running", pid=os.getpid(), epoch=i)
            run.update_status(state="completed", finished=time.time(), pid=None)
            open(os.path.join(done_dir, run_id), "w").close()
        else:  # renames in a loop, as the Runs page does, until just after the worker finished
            i, after = 0, 0
            while after < 3:
                i += 1
                store.rename(run_id, f"name {i}")
                after += os.path.exists(os.path.join(done_dir, run_id))
            open(os.path.join(done_dir, run_id + ".label"), "w").write(f"name {i}")
""")


def test_a_rename_while_the_worker_heartbeats_loses_neither_write(tmp_path):
    """Two writers of one status.json (issue 17: a completed run read as interrupted after a rename).
    20 of 20 trials must end with the worker's last state and the renamer's last label."""
    store = RunStore(tmp_path / "runs", reference_root=None)
    ids = [store.create(TrainSettings()).id for _ in range(20)]
    done = tmp_path / "done"
    done.mkdir()
    args = [str(store.root), ",".join(ids), str(done)]
    procs = [subprocess.Popen([sys.executable, "-c", RACE, role, *args]) for role in ("worker", "renamer")]
    for p in procs:
        assert p.wait(timeout=240) == 0
    outcome = [(store.get(i).raw_status()["state"], store.get(i).label == (done / f"{i}.label").read_text())
               for i in ids]
    assert outcome == [("completed", True)] * 20


def test_stored_predictions_keep_the_exact_predicted_class(tmp_path):
    # two classes whose probabilities differ by less than float16 can resolve
    run = RunStore(tmp_path).create(TrainSettings(epochs=1))
    probs = np.full((2, 10), 0.0, dtype=np.float32)
    probs[:, 3], probs[:, 7] = 0.40001, 0.40002  # a near-tie: equal in float16
    probs[1, 3] = 0.6
    run.save_predictions(probs, np.array([7, 3]), "fp")
    stored = run.load_predictions()
    assert stored["probs"].dtype == np.float32 and np.float16(0.40001) == np.float16(0.40002)
    assert stored["preds"].tolist() == [7, 3]
    assert run_evaluation(run).accuracy == 1.0


def test_a_run_summary_names_the_settings_that_differ_from_the_default_recipe(tmp_path):
    from cifar_app.web.tables import comparison_rows, runs_table_rows

    store = RunStore(tmp_path / "runs", reference_root=None)
    plain = store.create(TrainSettings(norm="layer", groups=8))  # LN uses no groups: not a change
    lever = store.create(TrainSettings(norm="group", arch="separable", ema=0.999, flip="alternate"))
    by_id = {s.id: s for s in store.summaries()}
    assert by_id[plain.id].changes == ""
    assert by_id[lever.id].changes == "arch=separable, ema=0.999, flip=alternate"
    rows = {r["id"]: r for r in runs_table_rows(list(by_id.values()))}
    assert rows[plain.id]["settings"] == "default recipe"
    assert rows[lever.id]["settings"] == "arch=separable, ema=0.999, flip=alternate"
    assert comparison_rows([(by_id[lever.id], [])]) == []  # no epochs yet: no comparison row


def test_an_unknown_run_id_is_not_echoed_back_whole():
    """A 10,000-character id (a URL parameter, a CLI argument) is named cut short in the error."""
    from cifar_app.store.run import RunNotFound

    text = str(RunNotFound("é" * 10_000))
    assert len(text) < 120 and text.startswith("no run 'ééé") and "(10,002 characters)" in text
    assert str(RunNotFound("no-such-run")) == "no run 'no-such-run'"
