"""Training as its own process: start, queue behind another run on the CPU, stop, resume."""

import time

import pytest

from cifar_app.core.settings import TrainSettings
from cifar_app.store.jobs import can_resume, start_run
from cifar_app.store.runstore import RunStore
from tests.conftest import wait_for


@pytest.fixture
def data_dir(tmp_path):
    from tests.conftest import write_image_tree

    return write_image_tree(tmp_path / "data", per_class_train=20, per_class_test=3)


def test_runs_queue_on_the_cpu_stop_keeps_the_checkpoint_and_resume_finishes(tmp_path, data_dir):
    store = RunStore(tmp_path / "runs", reference_root=None)
    # fp32 pinned: on a CPU with bf16, auto would first measure bf16's speed, and bf16 at batch 4 is
    # slow there; the queue does not depend on the arithmetic
    slow = TrainSettings(norm="batch", epochs=30, batch_size=4, max_lr=0.02, device="cpu", precision="fp32")
    first = store.create(slow)
    second = store.create(TrainSettings(norm="layer", epochs=1, batch_size=50, device="cpu",
                                        precision="fp32"))
    procs = [start_run(store, first.id, data_dir)]
    wait_for(lambda: len(first.metrics().epochs) >= 1, 180, "first epoch of run 1")  # batch 4, under load
    started = time.time()
    procs.append(start_run(store, second.id, data_dir))
    # start_run writes "queued" itself; only the second worker, alive and waiting for the training
    # lock, keeps heartbeating it (every second) while the first run trains
    beat = lambda: second.raw_status()["heartbeat"]  # noqa: E731
    first_beat = wait_for(lambda: beat() > started + 0.5 and beat(), 60, "the second worker to start")
    wait_for(lambda: beat() > first_beat + 0.5, 30, "the queued worker to heartbeat again")
    assert first.status()["state"] == "running"
    assert second.status()["state"] == "queued" and second.raw_status()["pid"] == procs[1].pid
    assert not second.metrics().batches  # waits for the CPU instead of halving both

    first.request_stop()
    wait_for(lambda: first.status()["state"] == "stopped", 180, "run 1 to stop")
    wait_for(lambda: second.status()["state"] == "completed", 180, "run 2 to complete")
    assert second.load_predictions() is not None and second.has_model()
    done = len(first.metrics().epochs)
    assert 1 <= done < 30 and first.has_checkpoint() and can_resume(first)

    first_settings = first.settings()
    first_settings.epochs = done + 1  # finish quickly: only one more epoch
    (first.path / "settings.json").write_text(__import__("json").dumps(first_settings.to_dict()))
    procs.append(start_run(store, first.id, data_dir, resume=True))
    wait_for(lambda: first.status()["state"] in ("completed", "failed"), 180, "resumed run to finish")
    assert first.status()["state"] == "completed", first.log_path.read_text()
    assert [e.epoch for e in first.metrics().epochs] == list(range(1, done + 2))
    for p in procs:
        p.wait(timeout=30)


@pytest.mark.parametrize("args", [
    "worker", "sweep-worker",
])
def test_the_workers_command_lines_round_trip_through_the_cli(args):
    """One owner for each internal command line: what ``start_run`` / ``start_experiment`` build is
    what the CLI's parser reads back, field for field (a missing --runs-dir stays missing)."""
    from cifar_app.cli import build_parser
    from cifar_app.lab.backends import SweepWorkerArgs
    from cifar_app.store.jobs import WorkerArgs

    kind = WorkerArgs if args == "worker" else SweepWorkerArgs
    samples = ([WorkerArgs("r1"), WorkerArgs("r1", "/tmp/runs é", "/data x", True, 3, True)]
               if kind is WorkerArgs else
               [SweepWorkerArgs("exp-a"), SweepWorkerArgs("exp-a", "/tmp/runs", "/d", "10.0.0.1:6379")])
    for sample in samples:
        assert kind.from_namespace(build_parser().parse_args(sample.argv())) == sample
