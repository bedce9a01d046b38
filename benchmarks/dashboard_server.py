"""Start ``streamlit run dashboard.py`` on a free loopback port for a benchmark or a screenshot.

    with dashboard(runs_dir, data) as (url, server):
        ...   # open f"{url}/train" in a browser; server is the Popen of the Streamlit process
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def dashboard(runs_dir: str | Path, data: str | Path | None = None, app_dir: Path = ROOT,
              timeout_s: float = 60.0, flags: list[str] | None = None
              ) -> Iterator[tuple[str, subprocess.Popen]]:
    """Serve ``app_dir``'s dashboard with ``runs_dir`` as its runs folder; stop it (by pid) after.
    The server options are ``app_dir``'s own (its ``.streamlit/config.toml``), plus ``flags``
    (e.g. ``web.app.option_flags()``: the lab's, for an app that has none)."""
    port = free_port()
    env = {**os.environ, "CIFAR_APP_RUNS": str(Path(runs_dir).resolve())}
    if data:
        env["CIFAR_APP_DATA"] = str(data)
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port",
                               str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
                               *(flags or [])],
                              cwd=app_dir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the dashboard did not start (exit code {server.poll()})") from None
                time.sleep(0.3)
        yield url, server
    finally:
        try:
            os.killpg(server.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
