"""The Ray backend: on a cluster started as the README says (``ray start --head`` in a shell, then
``sweep --ray-address``), and on a local Ray for what a cluster test would only repeat.

The cluster runs in a private network namespace whose only interface is loopback (``unshare``;
Ray 2.60 ignores ``--node-ip-address 127.0.0.1`` and would otherwise talk to the machine's own
address) and a private PID namespace, so every Ray process ends with it (tests/ray_cluster.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from cifar_app.lab.experiments import ExperimentStore, run_experiment
from cifar_app.store.runstore import RunStore
from tests.conftest import synthetic_data, write_image_tree

ray = pytest.importorskip("ray", reason="Ray is in requirements-dev.txt")
TINY = {"epochs": 2, "batch_size": 50, "max_lr": 0.05, "device": "cpu"}
HARNESS = Path(__file__).with_name("ray_cluster.py")
UNSHARE = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
PORT = 6390


def _can_unshare() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    return subprocess.run([*UNSHARE, "true"], capture_output=True).returncode == 0


needs_namespace = pytest.mark.skipif(not _can_unshare(), reason="needs unshare (root) for a private "
                                     "network namespace, as on this project's machines and CI")


def run_cluster(tmp_path: Path, steps: list[dict], **spec) -> dict:
    """Start a cluster as a user would (tests/ray_cluster.py), run ``steps`` against it, end it."""
    out = tmp_path / "cluster" / "result.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    spec_file = out.parent / "spec.json"
    spec_file.write_text(json.dumps({"home": str(tmp_path / "head-home"), "port": PORT, "out": str(out),
                                     "steps": steps, **spec}))
    proc = subprocess.Popen([*UNSHARE, sys.executable, str(HARNESS), str(spec_file)], start_new_session=True,
                            stdin=subprocess.DEVNULL)
    try:
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    result = json.loads(out.read_text())
    assert "error" not in result, result["error"] + "\n" + result.get("head_log", "")
    return result


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cifar_app", *args]


def run_files(run) -> tuple[set[str], Counter]:
    """A run's files (without its process output) and its records: metrics by type, probe records."""
    files = {p.name for p in run.path.iterdir() if not p.name.startswith(".")} - {"log.txt"}
    m = run.metrics()
    return files, Counter(batch=len(m.batches), epoch=len(m.epochs), probe=len(run.inside()))


@needs_namespace
def test_the_readme_recipe_runs_a_sweep_on_a_ray_start_head_cluster(tmp_path):
    """README: `ray get-auth-token --generate`, `ray start --head --port P`, another node joins with
    the token, then `sweep --backend ray --ray-address HEAD:P` from a shell with no Ray variables.
    Every point has the same files and records as a local point. Without the head's token, with a
    wrong one, or with no head, the CLI says why in one line, in seconds."""
    data = write_image_tree(tmp_path / "data", per_class_train=10, per_class_test=5)
    runs = tmp_path / "runs"
    sweep = ["sweep", "--grid", "norm=batch,group", "--set", "epochs=2", "--set", "batch_size=50",
             "--set", "max_lr=0.05", "--set", "device=cpu", "--backend", "ray", "--data", str(data)]
    head_token = str(tmp_path / "head-home" / ".ray" / "auth_token")
    other = str(tmp_path / "other-home")  # a machine without the token
    check = ["-c", f"from cifar_app.lab.ray_backend import check_cluster; check_cluster('127.0.0.1:{PORT}')"]
    result = run_cluster(tmp_path, token=True, workers=1, worker_env={"RAY_AUTH_MODE": "token"}, steps=[
        {"argv": cli(*sweep, "--ray-address", f"127.0.0.1:{PORT}", "--runs-dir", str(runs), "--json")},
        {"argv": cli(*sweep, "--ray-address", f"127.0.0.1:{PORT}", "--runs-dir", str(tmp_path / "r2")),
         "home": other},
        {"argv": [sys.executable, *check], "home": other, "env": {"RAY_AUTH_TOKEN": "not-the-token"}},
        {"argv": [sys.executable, *check], "home": other, "env": {"RAY_AUTH_TOKEN_PATH": head_token}},
        {"argv": cli(*sweep, "--ray-address", f"127.0.0.1:{PORT + 1}", "--runs-dir", str(tmp_path / "r3"))},
    ])
    ok, no_token, wrong, token_path, no_head = result["steps"]
    assert "Token authentication is enabled" in result["head_log"]

    assert ok["rc"] == 0, ok["stderr"][-3000:]
    report = json.loads(ok["stdout"])
    assert [r["status"] for r in report["runs"]] == ["completed", "completed"]
    store = RunStore(runs, reference_root=None)
    ray_runs = [store.get(r["id"]) for r in report["runs"]]
    assert all(r.summary().tags["backend"] == "ray" for r in ray_runs)

    # the same sweep on the local backend: the same files and records per point
    local = ExperimentStore(RunStore(tmp_path / "local-runs", reference_root=None))
    exp = local.create("local", {k: v for k, v in TINY.items()}, {"norm": ["batch", "group"]})
    from cifar_app.core.data import load_cifar10

    run_experiment(local, exp.id, data=load_cifar10(data))
    local_runs = [local.runs.get(p.run_id) for p in local.point_statuses(local.get(exp.id))]
    for remote, here in zip(ray_runs, local_runs):
        assert run_files(remote) == run_files(here)
        files, records = run_files(remote)
        assert {"inside.jsonl", "model.pt", "predictions.npz", "checkpoint.pt"} <= files
        assert records == Counter(batch=4, epoch=2, probe=3)  # 2 batches x 2 epochs; init + 2 epochs

    for step, words in ((no_token, ("asks for an access token", "~/.ray/auth_token")),
                        (wrong, ("refused the access token", "$RAY_AUTH_TOKEN")),
                        (no_head, ("no Ray head answers", "ray start --head"))):
        lines = [ln for ln in step["stderr"].splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:") or "RayConnectError" in ln]
        assert step["rc"] != 0 and errors, step["stderr"][-2000:]
        assert all(w in errors[-1] for w in words), errors[-1]
        assert step["seconds"] < 15 and not any("gcs_client" in ln for ln in lines), step["stderr"][-2000:]
    assert token_path["rc"] == 0, token_path["stderr"][-2000:]


def test_an_unreachable_or_malformed_address_is_one_line_with_the_fix(tmp_path):
    from cifar_app.lab.ray_backend import RayConnectError, check_cluster

    for address, words in (("ray://head:10001", "not a URL"), ("head", "HOST:PORT"),
                           ("127.0.0.1:1", "no Ray head answers"), ("head:99999", "HOST:PORT"),
                           ("é" * 300 + ":6390", "no Ray head answers"), ("", "HOST:PORT")):
        with pytest.raises(RayConnectError, match=words):
            check_cluster(address, timeout_s=2)


def test_a_refused_connection_is_recorded_on_the_experiment(tmp_path):
    from cifar_app.lab.ray_backend import RayConnectError, run_experiment_on_ray

    exps = ExperimentStore(RunStore(tmp_path / "runs", reference_root=None))
    exp = exps.create("lr", TINY, {"norm": ["batch"]}, backend="ray", ray_address="127.0.0.1:1")
    with pytest.raises(RayConnectError):
        run_experiment_on_ray(exps, exp.id, address=exp.ray_address, data=synthetic_data(100, 20))
    assert "no Ray head answers at 127.0.0.1:1" in exps.get(exp.id).error  # the page shows it


@pytest.fixture(scope="module")
def local_ray():
    """A Ray of this process only (not one a `ray start --head` left running), whose workers have
    no CIFAR-10 copy (no CIFAR_APP_DATA), so they get the driver's data through the object store."""
    saved = os.environ.pop("CIFAR_APP_DATA", None)
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="ERROR",
                 log_to_driver=False)
    finally:
        if saved is not None:
            os.environ["CIFAR_APP_DATA"] = saved
    yield
    ray.shutdown()


def test_a_failed_point_on_ray_is_recorded_and_the_rest_finish(tmp_path, local_ray):
    from cifar_app.lab.ray_backend import run_experiment_on_ray

    exps = ExperimentStore(RunStore(tmp_path / "runs", reference_root=None))
    exp = exps.create("lr", {**TINY, "norm": "none"}, {"max_lr": [5.0, 0.05]}, backend="ray")
    finished = []
    run_experiment_on_ray(exps, exp.id, data=synthetic_data(200, 50),
                          on_point=lambda i, n, s: finished.append(s))
    [bad, good] = exps.point_statuses(exps.get(exp.id))
    assert (bad.state, good.state) == ("failed", "completed") and "diverged" in bad.error
    assert sorted(finished) == ["completed", "failed"]
    run = exps.runs.get(good.run_id)
    assert "loaded by the driver" in run.raw_status()["data_source"]  # synthetic: not on workers
    assert run_files(run)[1] == Counter(batch=8, epoch=2, probe=3)


GPU_PACKING = r"""
import json, os, sys
os.environ.pop("CIFAR_APP_DATA", None)
import ray
from cifar_app.lab.experiments import ExperimentStore
from cifar_app.lab.ray_backend import run_experiment_on_ray
from cifar_app.store.runstore import RunStore
from tests.conftest import synthetic_data

ray.init(address="local", num_cpus=8, num_gpus=2, include_dashboard=False, logging_level="ERROR",
         log_to_driver=False)
exps = ExperimentStore(RunStore(sys.argv[1], reference_root=None))
tiny = {"epochs": 2, "batch_size": 50, "max_lr": 0.05, "arch": "plain"}  # packing, not the net: the cheap one
packed = exps.create("packed", tiny, {"seed": list(range(8))}, backend="ray", gpus_per_point=0.5)
cpu = exps.create("cpu", {**tiny, "epochs": 1}, {"seed": [0]}, backend="ray", cpus_per_point=2)
out = {}
for exp, n in ((packed, 600), (cpu, 200)):
    run_experiment_on_ray(exps, exp.id, data=synthetic_data(n, 50))
    out[exp.name] = [{k: exps.runs.get(p.run_id).raw_status().get(k) for k in (
        "state", "started", "finished", "gpus", "gpu_share", "cuda_visible_devices", "device", "threads")}
        for p in exps.point_statuses(exps.get(exp.id))]
print("RESULT " + json.dumps(out))
"""


def most_at_once(points: list[dict], slack_s: float = 5.0) -> int:
    """The most points that ran at once. Both stamps are the driver's: it stamps a point finished
    when it has stored it, so a point that ended while it stored another (and beat the running
    ones) may be stamped after its successor's start; each finish counts ``slack_s`` early. The
    first four run 12 s or more together: 8 at once, or 2, still shows."""
    events = sorted([(p["started"], 1) for p in points] + [(p["finished"] - slack_s, -1) for p in points])
    now = best = 0
    for _, step in events:
        now += step
        best = max(best, now)
    return best


@needs_namespace
@pytest.mark.timeout(600)
def test_points_pack_logical_gpus_and_see_the_gpu_ray_gave_them(tmp_path):
    """A local Ray with 8 CPUs and 2 logical GPUs: points asking for half a GPU run 4 at a time
    (the GPUs, not the CPUs, limit them), each sees the GPU it was given in CUDA_VISIBLE_DEVICES and
    ray.get_gpu_ids(), and, as no CUDA exists here, device auto trains on the CPU. Points asking for
    no GPU see none."""
    proc = subprocess.run([*UNSHARE, "sh", "-c", f'ip link set lo up; exec "{sys.executable}" -c "$0" "$1"',
                           GPU_PACKING, str(tmp_path / "runs")], capture_output=True, text=True,
                          timeout=600, cwd=Path(__file__).resolve().parent.parent,
                          env={**os.environ, "OMP_NUM_THREADS": "2"})  # one thread is the point's own
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("RESULT ", 1)[1])
    packed, cpu = out["packed"], out["cpu"]
    assert [p["state"] for p in packed + cpu] == ["completed"] * 9
    for p in packed:
        assert len(p["gpus"]) == 1 and p["gpus"][0] in ("0", "1") and p["gpu_share"] == 0.5
        assert p["cuda_visible_devices"] == p["gpus"][0] and p["device"] == "cpu" and p["threads"] == 1
    assert most_at_once(packed) == 4  # 2 GPUs / 0.5; the 8 CPUs alone would allow 8
    for p in cpu:
        assert p["gpus"] == [] and p["cuda_visible_devices"] == "" and p["threads"] == 2


def test_points_that_ask_for_more_than_the_cluster_has_fail_at_once(tmp_path, local_ray):
    """--gpus-per-point on a cluster without GPUs (or more CPUs than any node has) would leave every
    task pending forever; the sweep says why in one line and records it on the experiment."""
    from cifar_app.lab.ray_backend import RayConnectError, run_experiment_on_ray

    exps = ExperimentStore(RunStore(tmp_path / "runs", reference_root=None))
    for kw, why in (({"gpus_per_point": 0.5}, "0.5 GPU per point; the Ray cluster has 0"),
                    ({"cpus_per_point": 64}, "64 CPUs per point; the largest Ray node has 2")):
        exp = exps.create("gpu", TINY, {"seed": [0]}, backend="ray", **kw)
        with pytest.raises(RayConnectError, match=why):
            run_experiment_on_ray(exps, exp.id, data=synthetic_data(100, 20))
        assert why in exps.get(exp.id).error and not exps.get(exp.id).points[0].run_id
