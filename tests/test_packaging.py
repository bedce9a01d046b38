"""The app installs like one: the wheel (``pip install .``, not editable) holds the package data,
and from a folder outside the source checkout ``cifar-app serve`` serves every page and
``python -m cifar_app claims --json`` gives the shipped verdicts.

The wheel goes into a fresh venv with ``--no-deps``; the dependencies are this venv's, seen through
a ``.pth`` line (which adds the folder to ``sys.path`` without running its ``.pth`` files, so this
checkout's editable install stays out). The wheel is built once per session.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import site
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, wait_for


def tracked_files() -> list[str]:
    """The checkout's files under git (what a clone has), relative to the repository."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60)
    return [f for f in out.stdout.decode().split("\0") if f]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel built from a copy of the tracked files (a stale build/ or an untracked module of this
    checkout cannot leak into it)."""
    src, out = tmp_path_factory.mktemp("src"), tmp_path_factory.mktemp("wheel")
    for name in tracked_files():
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out), str(src)], check=True, timeout=300, cwd=out)
    (whl,) = out.glob("cifar_app-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> dict:
    """A venv holding only the wheel, and a working folder outside the checkout."""
    base = tmp_path_factory.mktemp("installed")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300)
    inner = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                capture_output=True, text=True, check=True).stdout.strip())
    deps = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if Path(p).is_dir()]
    (inner / "zz_deps.pth").write_text("\n".join(deps) + "\n")  # the dependencies, not the checkout
    work = base / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "CIFAR_APP_REFERENCE_EXPERIMENTS")}
    env.update(CIFAR_APP_RUNS=str(work / "runs"), CIFAR_APP_DATA=str(work / "no-data"),
               HOME=str(base), XDG_CACHE_HOME=str(base / "cache"))
    return {"venv": venv, "py": py, "work": work, "env": env}


def test_the_wheel_holds_the_package_and_its_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    tracked = {f for f in tracked_files() if f.startswith("cifar_app/") and f.endswith(".py")}
    assert {n for n in names if n.endswith(".py")} == tracked  # every module, and nothing else
    for needed in ("cifar_app/web/live_view.js", "cifar_app/web/dashboard.py", "cifar_app/web/pages/train.py",
                   "cifar_app/store/reference_experiments/preset_batch-size.json",
                   "cifar_app/store/reference_runs/ref-batch/model.pt"):
        assert needed in names, needed


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    out = subprocess.run([str(installed["py"]), "-c", "import cifar_app; print(cifar_app.__file__)"],
                         cwd=installed["work"], env=installed["env"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert str(installed["venv"]) in out.stdout and str(ROOT) not in out.stdout


def test_claims_json_from_any_folder_gives_the_shipped_verdicts(installed):
    out = subprocess.run([str(installed["py"]), "-m", "cifar_app", "claims", "--json"], cwd=installed["work"],
                         env=installed["env"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = json.loads(out.stdout)["claims"]
    assert len(rows) == 11
    measured = [r for r in rows if r["verdict"] in ("holds", "does not hold", "inconclusive")]
    assert len(measured) >= 7, [(r["id"], r["verdict"]) for r in rows]  # from the wheel's shipped results


def test_serve_passes_the_checkouts_streamlit_settings():
    """``cifar-app serve`` runs the installed app with the settings ``.streamlit/config.toml`` gives
    a checkout (upload limit, no usage statistics, no file watcher, ...), from any folder."""
    from cifar_app.web.app import SERVER_OPTIONS, server_flags

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    flat = {f"{section}.{key}": value for section, keys in config.items() for key, value in keys.items()}
    flat.pop("server.address")  # serve's --address
    assert flat == SERVER_OPTIONS
    flags = server_flags("0.0.0.0", 8600)
    assert flags[:4] == ["--server.address", "0.0.0.0", "--server.port", "8600"]
    assert "--browser.gatherUsageStats" in flags and flags[flags.index("--server.maxUploadSize") + 1] == "20"


@pytest.mark.timeout(1200)
def test_cifar_app_serve_from_any_folder_serves_every_page(installed):
    from cifar_app.web.app import PAGES

    port = _free_port()
    log = open(installed["work"] / "serve.log", "wb")
    proc = subprocess.Popen([str(installed["venv"] / "bin" / "cifar-app"), "serve", "--port", str(port)],
                            cwd=installed["work"], env=installed["env"], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _status(f"{url}/_stcore/health") == 200, timeout=120, what="the server")
        live = json.loads(urllib.request.urlopen(f"{url}/lab/runs/ref-batch/live", timeout=30).read())
        assert live["state"] == "completed"  # a shipped reference run, through the live routes
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
    # every page of the installed app renders (AppTest, from the installed files)
    script = ("import sys; from pathlib import Path; from streamlit.testing.v1 import AppTest\n"
              "import cifar_app.web as web; from cifar_app.web.app import PAGES\n"
              "entry = Path(web.__file__).parent / 'dashboard.py'  # what serve runs: the navigation\n"
              "for path in [entry, *(p.path for p in PAGES)]:\n"
              "    at = AppTest.from_file(str(path), default_timeout=120); at.run()\n"
              "    assert not at.exception, (path.name, [e.value for e in at.exception])\n"
              "    assert str(path).startswith(sys.argv[1]), path\n"
              "print(len(PAGES))")
    out = subprocess.run([str(installed["py"]), "-c", script, str(installed["venv"])], cwd=installed["work"],
                         env=installed["env"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == str(len(PAGES))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str) -> int | None:
    try:
        return urllib.request.urlopen(url, timeout=2).status
    except OSError:
        return None
