"""A classroom: N read-only viewers watch one training run. What does it cost the server?

    python benchmarks/classroom.py 30 --data PATH [--epochs 3] [--train-limit 10000] [--profile]

Starts the server as a teacher would, ``python -m cifar_app serve --address 0.0.0.0 --public-read``
(reached over 127.0.0.1), starts a training run with the CLI (its own process, as a worker is), and
opens N Chromium tabs on its Train page (the tabs run at nice 19: in a real classroom they render
on the viewers' machines). Measures, over the run's training:

- the server's CPU (its process tree, in cores: CPU seconds over wall seconds), and its CPU seconds
  from the run's end until every tab shows it (each re-runs its page once);
- how many tabs show the finished run within ``--finish-wait`` seconds of its end (the page's
  progress line says 'completed'), and after how long each did;
- the training speed (images/s over the epochs after the first) with the viewers, and alone, in a
  run of the same settings before them.

``--profile`` records the server with py-spy while the viewers watch (folded stacks, in the results
folder), to see where its CPU goes. Writes ``benchmarks/results/classroom.json``. Wall-clock figures
depend on the VM: compare only figures from one invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from dashboard_server import CHROMIUM, CHROMIUM_ARGS, ROOT, free_port
from results_file import write_result
from watch_overhead import _children, _cpu_s, _exe, _tree

RESULTS = ROOT / "benchmarks" / "results"
# In every tab: the moment the page first shows the finished run's progress line (the tab's own
# clock, so a busy harness does not delay the reading).
SEES_THE_END = """
setInterval(() => {
  if (!window.__labSawTheEnd && document.body && document.body.textContent.includes("completed · epoch"))
    window.__labSawTheEnd = Date.now();
}, 100);
"""


def cli(*args: str, runs: Path, app_dir: Path = ROOT, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cifar_app", *args], cwd=app_dir, start_new_session=True,
                            env={**os.environ, "CIFAR_APP_RUNS": str(runs)}, **kw)  # -m: app_dir's cifar_app


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def train(args: argparse.Namespace, runs: Path, label: str) -> subprocess.Popen:
    return cli("train", "--norm", "batch", "--epochs", str(args.epochs), "--train-limit",
               str(args.train_limit), "--test-limit", "2000",
               "--precision", "fp32", "--data", str(args.data), "--label", label,
               runs=runs, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_of(runs: Path, label: str, timeout: float = 120) -> tuple[str, Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in runs.iterdir() if runs.is_dir() else ():
            try:
                if json.loads((d / "status.json").read_text()).get("label") == label:
                    return d.name, d
            except (OSError, ValueError):
                continue
        time.sleep(0.2)
    raise RuntimeError(f"no run labelled {label!r} appeared")


def epochs_of(folder: Path) -> list[dict]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, filter(None, lines)) if r.get("type") == "epoch"]


def state_of(folder: Path) -> str:
    return json.loads((folder / "status.json").read_text()).get("state", "")


def speed(folder: Path) -> float:
    """Training images/s over the epochs after the first (the first includes warm-up)."""
    later = epochs_of(folder)[1:]
    return sum(e["images_per_s"] for e in later) / len(later)


def wait_state(folder: Path, states: set[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while state_of(folder) not in states:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{folder.name} did not reach {states}")
        time.sleep(0.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("viewers", type=int)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--train-limit", type=int, default=10_000)
    ap.add_argument("--finish-wait", type=float, default=60.0,
                    help="how long to wait for every tab to show the finished run (s)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--app-dir", type=Path, default=ROOT, help="the checkout whose server to measure "
                    "(e.g. the code before a change); the training is this checkout's")
    ap.add_argument("--out", default=str(RESULTS / "classroom.json"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    runs = Path(tempfile.mkdtemp(prefix="classroom-")) / "runs"
    alone = train(args, runs, "alone")
    alone.wait()
    alone_speed = speed(run_of(runs, "alone")[1])

    port = free_port()
    server = cli("serve", "--address", "0.0.0.0", "--public-read", "--port", str(port), runs=runs,
                 app_dir=args.app_dir.resolve(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
            break
        except OSError:
            time.sleep(0.3)
    trainer = train(args, runs, "watched")
    run_id, folder = run_of(runs, "watched")
    profiler = None
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1200, "height": 900})
            context.add_init_script(SEES_THE_END)
            tabs = []
            for _ in range(args.viewers):
                page = context.new_page()
                page.goto(f"{url}/train?run={run_id}")
                tabs.append(page)
            for pid in _tree(os.getpid(), _children()):  # the browser's processes: nice 19
                if "chromium" in _exe(pid):
                    os.setpriority(os.PRIO_PROCESS, pid, 19)
            wait_state(folder, {"running"}, 300)
            while not epochs_of(folder):  # measure from the first epoch's end: the tabs are loaded
                time.sleep(0.2)
            if args.profile:
                profiler = subprocess.Popen(["py-spy", "record", "--pid", str(server.pid), "--subprocesses",
                                             "--format", "raw", "--rate", "50", "--output",
                                             str(RESULTS / "classroom_profile.txt"), "--nonblocking"],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            kids = _children()
            cpu0, t0 = _cpu_s(_tree(server.pid, kids)), time.monotonic()
            wait_state(folder, {"completed", "failed", "stopped"}, 3600)
            cpu1, t1 = _cpu_s(_tree(server.pid, _children())), time.monotonic()
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(timeout=60)
            ended = time.time()
            deadline = time.monotonic() + args.finish_wait
            seen: dict[int, float] = {}  # tab -> seconds from the run's end until it showed it
            while time.monotonic() < deadline and len(seen) < len(tabs):
                time.sleep(1.0)
                for i, page in enumerate(tabs):  # each tab noted the moment itself (SEES_THE_END)
                    if i not in seen and (at := page.evaluate("window.__labSawTheEnd || 0")):
                        seen[i] = max(0.0, at / 1000 - ended)
            cpu2 = _cpu_s(_tree(server.pid, _children()))
            browser.close()
    finally:
        stop(trainer)
        stop(server)
    row = {"viewers": args.viewers, "app_dir": str(args.app_dir), "server_cores": (cpu1 - cpu0) / (t1 - t0),
           "window_s": t1 - t0, "server_cpu_s_after_the_end": cpu2 - cpu1,
           "tabs_saw_finish": len(seen), "finish_wait_s": args.finish_wait,
           "finish_seen_after_s": sorted(seen.values()),
           "images_per_s_alone": alone_speed, "images_per_s_watched": speed(folder),
           "settings": f"batch norm, {args.epochs} epochs, {args.train_limit} images, test 2000, fp32"}
    row["speed_ratio"] = row["images_per_s_watched"] / row["images_per_s_alone"]
    print(json.dumps(row, indent=1))
    write_result(args.out, {"command": "python benchmarks/classroom.py " + " ".join(sys.argv[1:]), **row})


if __name__ == "__main__":
    main()
