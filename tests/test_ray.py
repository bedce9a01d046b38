"""The Ray backend on a real local Ray instance (loopback only), started and stopped by the test."""

from __future__ import annotations

import pytest

from cifar_app.experiments import ExperimentStore, run_experiment
from cifar_app.runstore import RunStore
from tests.conftest import synthetic_data

ray = pytest.importorskip("ray", reason="Ray is in requirements-dev.txt")
TINY = {"epochs": 2, "batch_size": 50, "max_lr": 0.05, "device": "cpu"}


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray whose workers have no CIFAR-10 copy (no CIFAR_APP_DATA), so they must get the
    driver's data through the object store, as on a cluster without the dataset."""
    import os

    saved = os.environ.pop("CIFAR_APP_DATA", None)
    try:
        ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    finally:
        if saved is not None:
            os.environ["CIFAR_APP_DATA"] = saved
    yield
    ray.shutdown()


def test_a_sweep_on_ray_fills_the_local_store_like_the_local_backend(tmp_path, local_ray):
    from cifar_app.ray_backend import run_experiment_on_ray

    data = synthetic_data(200, 50)
    grid = {"norm": ["batch", "group"], "seed": [0, 1]}
    exps = ExperimentStore(RunStore(tmp_path / "ray-runs", reference_root=None))
    exp = exps.create("on ray", TINY, grid, backend="ray")
    finished = []
    run_experiment_on_ray(exps, exp.id, data=data, on_point=lambda i, n, s: finished.append(s))
    assert finished == ["completed"] * 4
    exp = exps.get(exp.id)
    points = exps.point_statuses(exp)
    for p in points:
        run = exps.runs.get(p.run_id)
        m = run.metrics()
        assert [e.epoch for e in m.epochs] == [1, 2] and len(m.batches) == 8  # 4 batches x 2 epochs
        assert run.has_model() and run.has_checkpoint() and run.load_predictions() is not None
        assert run.summary().tags["backend"] == "ray"
        assert "loaded by the driver" in run.raw_status()["data_source"]  # synthetic: not on workers
    local = ExperimentStore(RunStore(tmp_path / "local-runs", reference_root=None))
    same = local.create("local", TINY, grid)
    run_experiment(local, same.id, data=data)
    for a, b in zip(points, local.point_statuses(local.get(same.id))):
        assert a.settings == b.settings
        assert a.final_test_acc == pytest.approx(b.final_test_acc, abs=0.05)  # 1 vs 2 threads: float order


def test_a_failed_point_on_ray_is_recorded_and_the_rest_finish(tmp_path, local_ray):
    from cifar_app.ray_backend import run_experiment_on_ray

    exps = ExperimentStore(RunStore(tmp_path / "runs", reference_root=None))
    exp = exps.create("lr", {**TINY, "norm": "none"}, {"max_lr": [5.0, 0.05]}, backend="ray")
    run_experiment_on_ray(exps, exp.id, data=synthetic_data(200, 50))
    [bad, good] = exps.point_statuses(exps.get(exp.id))
    assert (bad.state, good.state) == ("failed", "completed") and "diverged" in bad.error
