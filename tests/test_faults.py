"""The hostile-user probe: each fault here once broke the app (issue 8, part A); each test failed
before its fix. Kill -9 at every step of an epoch's end, corrupt files, a read-only store, stop
right after start, zombie workers, a pickle payload, bad limits."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from cifar_app.core.records import EpochStats
from cifar_app.core.settings import TrainSettings
from cifar_app.store.fileio import StoreError
from cifar_app.store.jobs import can_resume, execute_run, start_run
from cifar_app.store.run import RunDamaged
from cifar_app.store.runstore import RunStore
from tests.conftest import synthetic_data, wait_for, write_image_tree

ROOT = Path(__file__).resolve().parent.parent
QUICK = TrainSettings(norm="batch", epochs=3, batch_size=50, max_lr=0.05, device="cpu", landscape=4)


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cifar_app", *args], capture_output=True, text=True,
                          timeout=240, env={**os.environ, **(env or {})}, cwd=ROOT)


def store_at(tmp_path: Path) -> RunStore:
    return RunStore(tmp_path / "runs", reference_root=None)


# ----------------------------------------------------------------------------- 2. stop after start


def test_a_stop_requested_before_the_worker_starts_is_honoured(tmp_path):
    store = store_at(tmp_path)
    run = store.create(QUICK)
    run.request_stop()  # the user presses Stop right after Start, before the worker is up
    execute_run(store, run.id, data=synthetic_data(200, 50))
    assert run.state() == "stopped" and run.metrics().epochs == [] and not run.has_model()
    assert not run.stop_requested()  # honoured, so consumed: a later Resume is not stopped again


def test_stop_pressed_the_instant_after_start_stops_the_worker(tmp_path):
    data = write_image_tree(tmp_path / "data", per_class_train=20, per_class_test=3)
    store = store_at(tmp_path)
    run = store.create(TrainSettings(norm="group", epochs=30, batch_size=4, device="cpu"))
    start_run(store, run.id, data)
    run.request_stop()
    wait_for(lambda: run.state() not in ("queued", "running"), what="the worker to stop")
    assert run.state() == "stopped" and len(run.metrics().epochs) == 0
    assert can_resume(run)


def test_cli_stop_of_a_run_that_is_not_training_says_so(tmp_path):
    store = store_at(tmp_path)
    run = store.create(QUICK)
    run.update_status(state="completed")
    out = cli("stop", run.id, "--runs-dir", str(store.root))
    assert out.returncode == 2 and "not training" in out.stderr and not run.stop_requested()


# ----------------------------------------------------------------------------- 3 + 8. damaged files


CORRUPTIONS = {
    "random bytes in metrics.jsonl": ("metrics.jsonl", os.urandom(64) + b"\n", "metrics.jsonl"),
    "random bytes without a newline": ("metrics.jsonl", b"\x9c\xff" + os.urandom(62), "last line"),
    "a JSON line that is a list": ("metrics.jsonl", b'[1, 2]\n', "line 1"),
    "a JSON line that is a number": ("metrics.jsonl", b'{"type": "epoch", "epoch": 1}\n7\n', "line 1"),
    "status.json holding a list": ("status.json", b'["running"]', "status.json"),
    "settings.json holding a list": ("settings.json", b'["batch"]', "settings.json"),
    "settings.json not JSON": ("settings.json", b'{"norm": "batch", ', "settings.json"),
    "settings.json with an unknown key": ("settings.json", b'{"colour": "red"}', "colour"),
    "settings.json truncated to nothing": ("settings.json", b"", "settings.json"),
}


@pytest.fixture
def two_runs(tmp_path, trained_store):
    """A store with one good completed run and one to damage (a copy of it)."""
    import shutil

    src = trained_store.list()[0]
    store = store_at(tmp_path)
    store.root.mkdir(parents=True)
    for name in ("20990101-000000-batch-good01", "20990101-000000-batch-bad001"):
        shutil.copytree(src.path, store.root / name)
    return store, store.get("20990101-000000-batch-good01"), store.get("20990101-000000-batch-bad001")


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_a_damaged_file_marks_only_its_run_damaged_and_is_left_untouched(two_runs, case):
    store, good, bad = two_runs
    name, content, says = CORRUPTIONS[case]
    (bad.path / name).write_bytes(content)
    before = {p.name: p.read_bytes() for p in bad.path.iterdir()}

    [s_bad] = [s for s in store.summaries() if s.id == bad.id]
    assert s_bad.status == "damaged" and s_bad.error.startswith(f"damaged: {name}") and says in s_bad.error
    assert store.get(good.id).summary().status == "completed"
    out = cli("runs", "--runs-dir", str(store.root))
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert good.id in out.stdout and f"damaged: {name}" in out.stdout
    rows = json.loads(cli("runs", "--runs-dir", str(store.root), "--json").stdout)
    assert {r["id"]: r["status"] for r in rows if not r["reference"]} == {good.id: "completed",
                                                                         bad.id: "damaged"}
    resume = cli("resume", bad.id, "--runs-dir", str(store.root))
    assert resume.returncode == 2 and "damaged" in resume.stderr and "Traceback" not in resume.stderr
    assert {p.name: p.read_bytes() for p in bad.path.iterdir()} == before  # nothing rewritten


def test_unreadable_settings_never_become_the_defaults(tmp_path):
    run = store_at(tmp_path).create(TrainSettings(norm="layer", epochs=3))
    (run.path / "settings.json").write_text("[]")
    with pytest.raises(RunDamaged, match="settings.json"):
        run.settings()


# ----------------------------------------------------------------------------- 4. kill at epoch end

KILL_POINTS = {
    # (what to wrap, when): the process is killed with SIGKILL right there
    "checkpoint written, not yet renamed": "replace:checkpoint.pt:2",
    "a landscape record logged mid-epoch": "after:append_landscape:3",
    "checkpoint renamed, epoch record not yet logged": "after:save_checkpoint:2",
    "epoch record logged, status not yet updated": "after:append_epoch:2",
    "last checkpoint renamed, last record not logged": "after:save_checkpoint:3",
    "model saved, predictions not yet": "after:save_model:1",
    "predictions saved, status not yet completed": "after:save_predictions:1",
}

KILLER = textwrap.dedent("""
    import os, signal, sys
    from cifar_app.store import runstore, jobs
    from cifar_app.core.records import EpochStats
    from tests.conftest import synthetic_data
    root, run_id, point = sys.argv[1:4]
    kind, what, nth = point.split(":")
    nth, calls = int(nth), {"n": 0}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    if kind == "replace":
        real = os.replace
        def replace(src, dst):
            if str(dst).endswith(what):
                calls["n"] += 1
                if calls["n"] == nth:
                    die()
            return real(src, dst)
        runstore.os.replace = replace
    else:
        name = "append_metrics" if what == "append_epoch" else what
        real = getattr(runstore.Run, name)
        def wrapped(self, *args, **kwargs):
            out = real(self, *args, **kwargs)
            if what != "append_epoch" or isinstance(args[0], EpochStats):
                calls["n"] += 1
                if calls["n"] == nth:
                    die()
            return out
        setattr(runstore.Run, name, wrapped)
    store = runstore.RunStore(root, reference_root=None)
    jobs.execute_run(store, run_id, data=synthetic_data(200, 50))
""")


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The same settings trained without interruption: what every resumed run must reproduce."""
    store = RunStore(tmp_path_factory.mktemp("straight") / "runs", reference_root=None)
    run = store.create(QUICK)
    execute_run(store, run.id, data=synthetic_data(200, 50))
    return run


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_kill_at_any_step_of_an_epochs_end_then_resume_loses_nothing(tmp_path, point, straight_run):
    store = store_at(tmp_path)
    run = store.create(QUICK)
    proc = subprocess.run([sys.executable, "-c", KILLER, str(store.root), run.id, KILL_POINTS[point]],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == -9, proc.stderr  # it really was killed there
    assert run.state() == "interrupted"

    execute_run(store, run.id, data=synthetic_data(200, 50), resume=True)
    assert run.state() == "completed"
    epochs = run.metrics().epochs
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert [r["epoch"] for r in run.inside()] == [0, 1, 2, 3]  # probe records agree too
    steps = [r["step"] for r in straight_run.landscape()]
    # at the start, on epoch 2's first step (after epoch 1's checkpoint), on its last step (before
    # that step's update and epoch 2's checkpoint), and on the last step of all
    assert steps == [0, 4, 7, 11] and [r["step"] for r in run.landscape()] == steps  # each once
    assert [r["loss_range"] for r in run.landscape()] == pytest.approx(
        [r["loss_range"] for r in straight_run.landscape()], abs=1e-6)
    want = straight_run.metrics().epochs
    assert [e.test_acc for e in epochs] == pytest.approx([e.test_acc for e in want], abs=1e-6)
    assert not list(run.path.glob(".*.tmp"))  # no temp file left behind
    got, ref = run.load_model_record()["model"], straight_run.load_model_record()["model"]
    for k in ref:
        torch.testing.assert_close(got[k].float(), ref[k].float(), atol=1e-4, rtol=0)


# ----------------------------------------------------------------------------- 5. unwritable store


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` made read-only for real: a read-only bind mount as root (root ignores mode bits),
    chmod otherwise."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    ok = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode == 0
    if ok and subprocess.run(["mount", "-o", "remount,bind,ro", str(path)],
                             capture_output=True).returncode == 0:
        try:
            yield path
        finally:
            subprocess.run(["umount", str(path)], check=True)
        return
    if ok:
        subprocess.run(["umount", str(path)])
    pytest.skip("cannot make a read-only folder here (root without mount rights)")


def test_a_read_only_runs_folder_gives_one_clear_line_and_leaves_nothing(tmp_path, trained_store):
    import shutil

    root = tmp_path / "runs"
    root.mkdir()
    src = trained_store.list()[0]
    shutil.copytree(src.path, root / src.id)
    data = write_image_tree(tmp_path / "data", per_class_train=2, per_class_test=1)
    with read_only(root):
        before = sorted(p.name for p in root.rglob("*"))
        runs = ["--runs-dir", str(root)]
        for args in (["train", "--norm", "batch", "--epochs", "1", "--data", str(data), *runs],
                     ["stop", src.id, *runs], ["delete", src.id, *runs]):
            out = cli(*args)
            lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
            assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
            if args[0] != "stop":  # stop: the run is not training, which is said first
                assert str(root) in lines[-1] and "Read-only file system" in lines[-1], lines
        # a measurement that only caches its result prints it, and says it could not keep it
        out = cli("batchdep", src.id, "--data", str(data), *runs)
        assert out.returncode == 0 and "eval mode" in out.stdout, out.stderr
        assert out.stderr.strip().splitlines()[-1].startswith("note: not cached with the run: cannot write")
        assert sorted(p.name for p in root.rglob("*")) == before  # nothing partial left
        with pytest.raises(StoreError, match="runs folder"):
            RunStore(root, reference_root=None).create(QUICK)
        live = RunStore(root, reference_root=None).get(src.id)
        with pytest.raises(StoreError, match=str(root)):
            live.request_stop()


def test_dev_null_as_the_runs_folder_is_one_clear_error(tmp_path):
    data = write_image_tree(tmp_path / "data", per_class_train=2, per_class_test=1)
    out = cli("train", "--norm", "batch", "--epochs", "1", "--data", str(data), "--runs-dir", "/dev/null")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == \
        "error: cannot use /dev/null as the runs folder: it is not a folder"


# ----------------------------------------------------------------------------- 6. zombies


def test_finished_workers_are_reaped_not_left_defunct(tmp_path):
    data = write_image_tree(tmp_path / "data", per_class_train=4, per_class_test=1)
    store = store_at(tmp_path)
    run = store.create(TrainSettings(norm="none", epochs=1, batch_size=20, device="cpu"))
    pid = start_run(store, run.id, data).pid  # the page drops the Popen, as Streamlit's script does
    wait_for(lambda: run.state() == "completed", what="the run to complete")

    def gone() -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return True

    wait_for(gone, timeout=10, what=f"worker {pid} to be reaped")


# ----------------------------------------------------------------------------- 7. pickle payloads


class Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_holding_code_is_refused_without_advice_to_run_it(tmp_path):
    store = store_at(tmp_path)
    run = store.create(QUICK)
    run.update_status(state="stopped")
    marker = tmp_path / "pwned"
    torch.save({"model": Payload(str(marker)), "epoch": 1, "history": []}, run.path / "checkpoint.pt")
    data = write_image_tree(tmp_path / "data", per_class_train=2, per_class_test=1)
    out = cli("resume", run.id, "--runs-dir", str(store.root), "--data", str(data))
    assert out.returncode == 2 and not marker.exists()
    assert "will not be loaded" in out.stderr and "weights_only" not in out.stderr
    assert "Traceback" not in out.stderr
    status = run.raw_status()
    assert status["state"] == "failed" and "weights_only" not in json.dumps(status)
    assert "will not be loaded" in status["error"]


def test_a_model_holding_code_is_refused_by_evaluate_and_predict(tmp_path, trained_store):
    import shutil

    src = trained_store.list()[0]
    store = store_at(tmp_path)
    shutil.copytree(src.path, store.root / src.id)
    marker = tmp_path / "pwned"
    torch.save({"model": Payload(str(marker))}, store.root / src.id / "model.pt")
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 40)).save(image)
    out = cli("predict", src.id, str(image), "--runs-dir", str(store.root))
    assert out.returncode == 2 and "will not be loaded" in out.stderr and not marker.exists()
    assert "weights_only" not in out.stderr and "Traceback" not in out.stderr


# ----------------------------------------------------------------------------- 9. bad limits


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "2.5"])
def test_evaluate_refuses_a_bad_test_limit(trained_store, limit):
    run = trained_store.list()[0]
    out = cli("evaluate", run.id, "--runs-dir", str(trained_store.root), "--test-limit", limit)
    assert out.returncode == 2 and "test_limit" in out.stderr and "Traceback" not in out.stderr


# ----------------------------------------------------------------------------- compatibility


def test_a_run_in_the_old_format_resumes(tmp_path):
    """Logs and checkpoints written before train_ce and status tags existed still resume."""
    store = store_at(tmp_path)
    run = store.create(QUICK.replace(epochs=2))
    data = synthetic_data(200, 50)
    execute_run(store, run.id, data=data)
    ckpt = torch.load(run.path / "checkpoint.pt", weights_only=True)
    ckpt["epoch"], ckpt["history"] = 1, [{k: v for k, v in h.items() if k != "train_ce"}
                                         for h in ckpt["history"][:1]]
    torch.save(ckpt, run.path / "checkpoint.pt")
    lines = [json.loads(ln) for ln in (run.path / "metrics.jsonl").read_text().splitlines()]
    old = [{k: v for k, v in r.items() if k not in ("train_ce", "t")} for r in lines if r["epoch"] == 1]
    (run.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    status = run.raw_status()
    status.pop("tags")
    status["state"] = "stopped"
    (run.path / "status.json").write_text(json.dumps(status))
    assert run.metrics().epochs[0].train_ce is None
    execute_run(store, run.id, data=data, resume=True)
    epochs = run.metrics().epochs
    assert [e.epoch for e in epochs] == [1, 2] and epochs[0].train_ce is None
    assert isinstance(epochs[1], EpochStats) and epochs[1].train_ce is not None


@pytest.mark.parametrize("junk", [b"\x80\x02j", b"r\x00", b"j", b"\x80\x02}q\x00(X", b"PK\x03\x04", b""])
def test_a_torch_file_of_a_few_bytes_is_one_clear_error(junk):
    """A model file of ``b"\\x80\\x02j"`` (an old-format pickle cut short) raised ``struct.error``,
    which nothing caught: the bundle import on the Runs page and Misclassified showed a traceback."""
    from cifar_app.store.formats import FileInvalid, parse_torch

    with pytest.raises(FileInvalid, match="unreadable or truncated|not a file this app wrote"):
        parse_torch(junk, ("model",))
