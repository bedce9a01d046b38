"""What does the Train page cost the browser while it follows a run? Chromium's CPU, no training.

    python benchmarks/live_page_cpu.py [--seconds 36] [--app-dir DIR]

A synthetic 'worker' (this script) appends records to a run through the run store at a pace like
this VM's training (13 batches/s, an epoch every 12 s), so the browser's share is measured alone,
without the noise of a real training run. Three cases, each in a fresh Chromium with the Train page
open on the run:

- finished: a completed run (the page does not poll);
- quiet: a running run that logs nothing (the cost of asking);
- live: a running run that logs batches and epochs.

Prints and writes ``benchmarks/results/live_page_cpu.json``: CPU seconds of Chromium's processes
and of the Streamlit server over the window. ``--app-dir`` measures another checkout (e.g. the code
before a change) with the same harness; compare only figures from one invocation.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dashboard_server import CHROMIUM, CHROMIUM_ARGS, ROOT, dashboard
from results_file import write_result
from watch_overhead import cpu_by_role

BATCHES_PER_EPOCH, EPOCH_S = 156, 12.0

# Runs in the checkout under test (its own run store and record classes): create the run, then, with
# "live", log batches and epochs until stdin closes.
# It names the states as plain strings, as status.json stores them (RunState's values), so it also
# runs against checkouts from before cifar_app/states.py.
WORKER = """import sys, time
from cifar_app.core.records import BatchStats, EpochStats
from cifar_app.store.runstore import RunStore
from cifar_app.core.settings import TrainSettings
runs, case, per_epoch, epoch_s = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
run = RunStore(runs).create(TrainSettings(norm="group", epochs=20), label=f"live page cpu: {case}")
run.update_status(state="running", pid=None, heartbeat=time.time())
first = [BatchStats(i, 1, i, per_epoch, 2.3 - i / 1000, 0.1, time.time()) for i in range(1, per_epoch + 1)]
run.append_metrics(*first, EpochStats(1, 2.0, 0.3, 1.9, 0.32, epoch_s, 1700.0, 0.1, 1.9))
run.update_status(state="completed" if case == "finished" else "running", pid=__import__("os").getpid())
print(run.id, flush=True)
sys.stdin.readline()  # go
if case != "live":
    sys.stdin.read()  # alive (so the run stays 'running') until killed
step, epoch = per_epoch, 1
while True:
    epoch += 1
    for b in range(1, per_epoch + 1):
        step += 1
        run.append_metrics(BatchStats(step, epoch, b, per_epoch, 2.3 - step / 5000, 0.1, time.time()))
        time.sleep(epoch_s / per_epoch)
    run.append_metrics(EpochStats(epoch, 1.8, 0.4, 1.7, 0.42, epoch_s, 1700.0, 0.1, 1.7))
    run.heartbeat()
"""


def measure(case: str, args: argparse.Namespace, url: str, server_pid: int, runs: Path, pw) -> dict:
    worker = subprocess.Popen([sys.executable, "-c", WORKER, str(runs), case, str(BATCHES_PER_EPOCH),
                               str(EPOCH_S)], cwd=args.app_dir, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        run_id = worker.stdout.readline().strip()
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(f"{url}/train?run={run_id}")
        page.wait_for_selector("h1", timeout=60_000)
        page.wait_for_timeout(args.settle * 1000)
        worker.stdin.write("go\n")
        worker.stdin.flush()
        before, t0 = cpu_by_role(server_pid, None), time.time()
        page.wait_for_timeout(args.seconds * 1000)
        after, t1 = cpu_by_role(server_pid, None), time.time()
        browser.close()
    finally:
        worker.kill()
        worker.wait()
    return {"case": case, "seconds": round(t1 - t0, 1),
            "browser_cpu_s": round(after["browser"] - before["browser"], 2),
            "server_cpu_s": round(after["server"] - before["server"], 2)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=36.0, help="measuring window per case")
    p.add_argument("--settle", type=float, default=8.0, help="seconds between opening the page and measuring")
    p.add_argument("--app-dir", type=Path, default=ROOT, help="the checkout to serve")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/live_page_cpu.json"))
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    results = []
    with tempfile.TemporaryDirectory(prefix="runs-livecpu-") as tmp, \
            dashboard(tmp, None, args.app_dir) as (url, server), sync_playwright() as pw:
        for case in ("finished", "quiet", "live"):
            results.append(measure(case, args, url, server.pid, Path(tmp), pw))
            print(json.dumps(results[-1]), flush=True)
    write_result(args.out, {"app_dir": str(args.app_dir), "date": time.strftime("%Y-%m-%d %H:%M"),
                            "pace": {"batches_per_epoch": BATCHES_PER_EPOCH, "epoch_s": EPOCH_S},
                            "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
