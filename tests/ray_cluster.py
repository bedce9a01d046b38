"""Run commands against a real Ray cluster started as the README says, inside a private network.

``python tests/ray_cluster.py SPEC.json`` is meant to run under ``unshare --net --pid --fork
--kill-child --mount-proc`` (tests/test_ray.py does that): its network namespace has only loopback,
which it brings up, so Ray (which ignores ``--node-ip-address 127.0.0.1`` and talks to the
machine's own address) stays on this machine; the PID namespace ends every Ray process when this
script ends, whatever happens.

SPEC: ``{"home": HOME for every command (Ray's ~/.ray/auth_token lives there), "port": P,
"token": generate a token first (``ray get-auth-token --generate``, so the head turns
authentication on), "workers": extra nodes (``ray start --address 127.0.0.1:P``, with the
variables "worker_env"), "steps": [{"argv":
[...], "env": {extra variables}, "home": another HOME}], "out": path of the JSON result}``.

The head and each extra node are started as a user would, ``ray start ... --block``, each a
subprocess in its own process group, and ended by that group's id (SIGTERM, then SIGKILL after 30 s).
The result: for each step its exit code, stdout, stderr and seconds; plus the head's log.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

RAY_VARIABLES = ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def clean_env(home: str, extra: dict | None = None) -> dict:
    """The environment of a user's shell: no Ray variables, the given HOME."""
    env = {k: v for k, v in os.environ.items() if k not in RAY_VARIABLES}
    env.update(HOME=home, RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
    env.update(extra or {})
    return env


def ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def start_node(args: list[str], env: dict, log: Path, timeout_s: float = 90) -> subprocess.Popen:
    """``ray start ARGS --block`` in its own process group; returns once Ray says it started."""
    with open(log, "wb") as out:
        proc = subprocess.Popen([ray_cli(), "start", *args, "--block"], stdout=out, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if b"Ray runtime started" in log.read_bytes():
            return proc
        if proc.poll() is not None:
            raise RuntimeError(f"ray start {' '.join(args)} exited {proc.returncode}:\n{log.read_text()}")
        time.sleep(0.2)
    stop_node(proc)
    raise RuntimeError(f"ray start {' '.join(args)} did not start in {timeout_s} s:\n{log.read_text()}")


def stop_node(proc: subprocess.Popen) -> None:
    """End a node by its process group id, as a user's Ctrl-C / kill would."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    home, port, out = spec["home"], spec["port"], Path(spec["out"])
    Path(home).mkdir(parents=True, exist_ok=True)
    env = clean_env(home)
    logs = out.parent
    result: dict = {"steps": []}
    nodes: list[subprocess.Popen] = []
    try:
        if spec.get("token"):
            subprocess.run([ray_cli(), "get-auth-token", "--generate"], env=env, check=True,
                           capture_output=True)
        nodes.append(start_node(["--head", "--port", str(port), "--num-cpus", str(spec.get("head_cpus", 1)),
                                 "--include-dashboard=false"], env, logs / "head.log"))
        for k in range(spec.get("workers", 0)):
            nodes.append(start_node(["--address", f"127.0.0.1:{port}", "--num-cpus", "1"],
                                    clean_env(home, spec.get("worker_env")), logs / f"worker{k}.log"))
        for step in spec["steps"]:
            t = time.monotonic()
            proc = subprocess.run(step["argv"], env=clean_env(step.get("home", home), step.get("env")),
                                  capture_output=True, text=True, timeout=step.get("timeout", 240),
                                  stdin=subprocess.DEVNULL)
            result["steps"].append({"rc": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr,
                                    "seconds": time.monotonic() - t})
    except Exception as e:  # noqa: BLE001 - reported to the test, which fails with it
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        for proc in reversed(nodes):
            stop_node(proc)
        head_log = logs / "head.log"
        result["head_log"] = head_log.read_text(errors="replace") if head_log.exists() else ""
        out.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
