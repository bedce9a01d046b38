"""The CLI verbs end to end, each in a fresh process as a user would run them."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    # no PYTHONPATH: the package is installed (editable) by requirements.txt
    proc = subprocess.run([sys.executable, "-m", "cifar_app", *args], capture_output=True, text=True,
                          timeout=240, cwd="/")
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from tests.conftest import write_image_tree

    base = tmp_path_factory.mktemp("cli")
    data = write_image_tree(base / "data", per_class_train=20, per_class_test=5)
    runs = base / "runs"
    out = cli("train", "--norm", "group", "--epochs", "2", "--batch-size", "32", "--max-lr", "0.05",
              "--data", str(data), "--runs-dir", str(runs), "--seed", "3", "--train-limit", "160")
    run_id, _, acc = out.stdout.strip().partition("\t")
    assert "final test accuracy" in acc and "epoch  2/2" in out.stderr
    return data, runs, run_id


def test_runs_lists_the_run_as_json(trained):
    _, runs, run_id = trained
    listed = json.loads(cli("runs", "--runs-dir", str(runs), "--json").stdout)
    [row] = [r for r in listed if not r["reference"]]
    assert row["id"] == run_id and row["norm"] == "group" and row["status"] == "completed"
    assert row["epoch"] == row["epochs"] == 2 and 0 <= row["best_test_acc"] <= 1
    assert run_id in cli("runs", "--runs-dir", str(runs)).stdout


def test_listing_runs_imports_neither_numpy_nor_torch(trained):
    """``runs`` reads the run index alone: numpy's import was a seventh of ``runs --json`` at
    10,000 runs on this VM, and the modules on the listing's path now import it where they use it."""
    _, runs, run_id = trained
    code = ("import sys\nfrom cifar_app.cli import main\n"
            f"code = main(['runs', '--json', '--runs-dir', {str(runs)!r}])\n"
            "print(code, sorted(m for m in ('numpy', 'torch', 'PIL', 'scipy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert run_id in out.stdout, out.stdout[-500:] + out.stderr[-2000:]  # the run was listed
    assert out.stdout.rstrip().endswith("\n0 []"), out.stdout[-500:] + out.stderr[-2000:]


def test_evaluate_reports_accuracy_loss_per_class_and_params(trained):
    data, runs, run_id = trained
    result = json.loads(cli("evaluate", run_id, "--data", str(data), "--runs-dir", str(runs),
                            "--json").stdout)
    assert 0 <= result["accuracy"] <= 1 and result["loss"] > 0 and result["n"] == 50
    assert len(result["per_class"]) == 10 and result["params"] < 50_000
    stored = json.loads(cli("runs", "--runs-dir", str(runs), "--json").stdout)
    final = next(r for r in stored if r["id"] == run_id)["final_test_acc"]
    assert abs(result["accuracy"] - final) < 1e-6  # re-evaluation matches the training log
    tta = json.loads(cli("evaluate", run_id, "--data", str(data), "--runs-dir", str(runs), "--json",
                         "--tta").stdout)
    assert tta["flip_tta"] and not result["flip_tta"] and tta["n"] == 50
    assert tta["loss"] != result["loss"]  # the mirror images were scored too


def test_predict_gives_a_result_per_image_and_fails_only_the_bad_one(trained, tmp_path):
    _, runs, run_id = trained
    good = tmp_path / "good.png"
    Image.fromarray(np.full((50, 70, 3), 120, np.uint8)).save(good)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not really a jpeg")
    proc = cli("predict", run_id, str(good), str(bad), str(tmp_path / "missing.png"),
               "--runs-dir", str(runs), "--json", "--top-k", "3", check=False)
    assert proc.returncode == 1
    out = json.loads(proc.stdout)
    assert [("top_k" in o, "error" in o) for o in out] == [(True, False), (False, True), (False, True)]
    assert len(out[0]["top_k"]) == 3 and out[0]["file"] == str(good)


def test_summary_json_has_layers_and_total(trained):
    out = json.loads(cli("summary", "--norm", "layer", "--json").stdout)
    assert out["total_params"] < 50_000
    assert [layer["name"] for layer in out["layers"]][:3] == ["C1", "C2", "c3"]
    assert "total" in cli("summary", "--norm", "none").stdout


def test_clear_errors_and_exit_codes(tmp_path):
    missing = cli("train", "--norm", "batch", "--data", str(tmp_path / "nope"), "--runs-dir",
                  str(tmp_path / "runs"), check=False)
    assert missing.returncode == 2 and "No CIFAR-10 found" in missing.stderr
    assert "Traceback" not in missing.stderr
    bad = cli("train", "--norm", "batch", "--epochs", "99", "--runs-dir", str(tmp_path / "runs"), check=False)
    assert bad.returncode == 2 and "epochs" in bad.stderr
    unknown = cli("evaluate", "../../etc", "--runs-dir", str(tmp_path / "runs"), check=False)
    assert unknown.returncode == 2 and "no run" in unknown.stderr


def test_reference_runs_are_listed_and_usable_by_id(tmp_path):
    rows = json.loads(cli("runs", "--runs-dir", str(tmp_path / "none-yet"), "--json").stdout)
    refs = {r["id"]: r for r in rows if r["reference"]}
    assert "ref-batch" in refs and refs["ref-batch"]["best_test_acc"] >= 0.80
    image = tmp_path / "x.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(image)
    out = json.loads(cli("predict", "ref-batch", str(image), "--runs-dir", str(tmp_path), "--json").stdout)
    assert len(out[0]["top_k"]) == 5


def test_precision_says_the_bf16_verdict_it_goes_by(tmp_path, monkeypatch):
    from tests.test_precision import seeds_file

    assert "bf16 accuracy: no results" in cli("precision").stdout  # the tests' missing file
    bf16 = tmp_path / "bf16.json"
    seeds_file(bf16, {"batch": [0.812, 0.809, 0.815], "group": [0.79, 0.795, 0.791]},
               arch="plain")  # the shipped fp32 seeds' recipe
    monkeypatch.setenv("CIFAR_APP_BF16_RESULTS", str(bf16))
    out = json.loads(cli("precision", "--json").stdout)
    rows = out["verdict"]["norms"]
    assert rows["batch"]["within_noise"] and not rows["group"]["within_noise"]  # vs the shipped fp32
    assert out["verdict"]["within_noise"] is False
    text = cli("precision").stdout
    assert "below fp32's seed noise" in text and "group  bf16 79.20% (n=3)" in text
