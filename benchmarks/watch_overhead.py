"""Does watching a run slow it down? Training speed unwatched vs watched in a real Chromium.

    python benchmarks/watch_overhead.py --data PATH [--rounds 2] [--tabs 1 3] [--app-dir DIR]

In one invocation on one machine: start the dashboard, then train the same run (GroupNorm,
3 epochs of 20,000 images by default, in the worker process the dashboard starts) again and again,
alternating *alone* (no page open) with *watched* (the Train page open on that run in headless
Chromium; with ``--tabs 3`` also Compare and Runs in two more tabs), ending alone. A watched run's
tabs are opened while it is queued and left ``--settle`` seconds to load before its worker starts,
as for a user who pressed Start and watches, nobody touching the page:

    alone, watched x1, watched x3, alone, watched x1, watched x3, alone

Each watched run's speed is divided by the mean of the alone runs just before and after it. For each
run it records the training images/s per epoch (the run's own log), the CPU seconds the Streamlit
server and Chromium used while it trained, and, watched, the lag from the worker logging a batch to
the page showing it (or a later batch) in the progress line, read by a MutationObserver.

Writes ``benchmarks/results/watch_overhead.json`` and prints a table. ``--app-dir`` serves another
checkout (e.g. the code before a change) with the same harness; the runs go to a temporary
``runs-watch-*`` folder inside it, where the default ``./runs`` would be.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dashboard_server import CHROMIUM, CHROMIUM_ARGS, ROOT, dashboard
from results_file import write_result

TICK = os.sysconf("SC_CLK_TCK")
PROGRESS = re.compile(r"epoch (\d+)/\d+ · batch (\d+)/(\d+)")
OBSERVER = """
window.__seen = [];
let last = null;
new MutationObserver(() => {
  // the live view's line (now), or Streamlit's progress element (an older checkout, --app-dir)
  const el = document.querySelector('[data-testid="labProgressText"], [data-testid="stProgress"]');
  const text = el ? el.textContent : null;  // not innerText: that forces a layout
  if (text && text !== last) { last = text; window.__seen.push([Date.now() / 1000, text]); }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""
TABS = {1: ["train?run={run}"], 3: ["train?run={run}", "compare", ""]}


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d.name))
    return kids


def _tree(pid: int, kids: dict[int, list[int]]) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def _cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system, their reaped children included) of live processes ``pids``."""
    total = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(x) for x in f[11:15])
        except (OSError, IndexError, ValueError):
            pass
    return total / TICK


def cpu_by_role(server_pid: int, trainer_pid: int | None) -> dict[str, float]:
    """CPU seconds so far of the server's process tree, of Chromium's processes and of the trainer."""
    kids = _children()
    browser = [p for p in _tree(os.getpid(), kids) if "chromium" in _exe(p)]
    return {"server": _cpu_s(_tree(server_pid, kids)), "browser": _cpu_s(browser),
            "trainer": _cpu_s(_tree(trainer_pid, kids)) if trainer_pid else 0.0}


def _exe(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def _log(runs: Path, run_id: str) -> tuple[list[dict], list[dict]]:
    recs = [json.loads(line) for line in (runs / run_id / "metrics.jsonl").read_text().splitlines() if line]
    return [r for r in recs if r["type"] == "batch"], [r for r in recs if r["type"] == "epoch"]


def lag_seconds(batches: list[dict], seen: list[tuple[float, str]]) -> list[float]:
    """For every logged batch (``t``: Unix s), seconds until the page first showed it or a later
    batch; batches logged after the page's last change are left out."""
    shown = []  # (time, global step) in time order
    for when, text in seen:
        if m := PROGRESS.search(text):
            epoch, batch, per_epoch = map(int, m.groups())
            shown.append((when, (epoch - 1) * per_epoch + batch))
    lags, i = [], 0
    for b in sorted(batches, key=lambda r: r["step"]):
        while i < len(shown) and (shown[i][1] < b["step"] or shown[i][0] < b["t"] - 0.05):
            i += 1
        if i == len(shown):
            break
        lags.append(max(0.0, shown[i][0] - b["t"]))
    return lags


CREATE = """import sys
from cifar_app.store.runstore import RunStore
from cifar_app.core.settings import TrainSettings
runs, norm, epochs, train_limit, test_limit, label = sys.argv[1:]
run = RunStore(runs).create(TrainSettings(norm=norm, epochs=int(epochs), train_limit=int(train_limit),
                                          test_limit=int(test_limit)), label=label)
print(run.id)
"""


def one_run(mode: str, tabs: int, args: argparse.Namespace, url: str, server_pid: int, runs: Path,
            pw) -> dict:
    """Create a queued run (with the app under test), open its tabs and let them settle, then start
    the worker the dashboard would start, and measure while it trains."""
    run_id = subprocess.run([sys.executable, "-c", CREATE, str(runs), args.norm, str(args.epochs),
                             str(args.train_limit), str(args.test_limit), f"bench {mode}"],
                            cwd=args.app_dir, check=True, capture_output=True, text=True).stdout.strip()
    browser, pages = None, []
    if tabs:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        context.add_init_script(OBSERVER)
        for path in TABS[tabs]:
            page = context.new_page()
            page.goto(f"{url}/{path.format(run=run_id)}")
            page.wait_for_selector("h1", timeout=60_000)
            pages.append(page)
        time.sleep(args.settle)  # opened before the run starts, as a user who pressed Start has it
    cmd = [sys.executable, "-m", "cifar_app", "worker", run_id, "--runs-dir", str(runs), "--data", args.data]
    trainer = subprocess.Popen(cmd, cwd=args.app_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    cpu0, t0 = cpu_by_role(server_pid, trainer.pid), time.time()
    cpu1, t1 = cpu0, t0
    while trainer.poll() is None:
        time.sleep(0.5)
        if trainer.poll() is None:
            cpu1, t1 = cpu_by_role(server_pid, trainer.pid), time.time()
    seen = pages[0].evaluate("window.__seen") if pages else []
    if browser is not None:
        browser.close()
    if trainer.returncode != 0:
        raise RuntimeError(f"training failed ({trainer.returncode}): {' '.join(cmd)}")
    batches, epochs = _log(runs, run_id)
    speeds = [e["images_per_s"] for e in epochs]
    lags = lag_seconds(batches, seen)
    rec = {"mode": mode, "tabs": tabs, "run": run_id, "images_per_s": [round(s, 1) for s in speeds],
           "mean_images_per_s": round(statistics.fmean(speeds), 1), "seconds": round(t1 - t0, 1),
           "cpu_s": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu0}}
    if tabs:
        q = statistics.quantiles(lags, n=10) if len(lags) >= 2 else [float("nan")] * 9
        rec["lag_s"] = {"median": round(statistics.median(lags), 2) if lags else None,
                        "p90": round(q[8], 2), "max": round(max(lags), 2) if lags else None,
                        "batches": len(lags), "page_updates": len(seen)}
    return rec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--tabs", type=int, nargs="+", default=[1, 3], choices=sorted(TABS))
    p.add_argument("--norm", default="group")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--train-limit", type=int, default=20_000)
    p.add_argument("--test-limit", type=int, default=10_000)
    p.add_argument("--settle", type=float, default=8.0, help="seconds between opening the tabs and the start")
    p.add_argument("--app-dir", type=Path, default=ROOT, help="the checkout to serve and train with")
    p.add_argument("--out", default=str(ROOT / "benchmarks/results/watch_overhead.json"))
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    plan = [("alone", 0)]
    for _ in range(args.rounds):
        plan += [(f"watched x{t}", t) for t in args.tabs] + [("alone", 0)]
    results = []
    # the runs folder sits in the app's folder, as the default ./runs does
    with tempfile.TemporaryDirectory(prefix="runs-watch-", dir=args.app_dir) as tmp, \
            dashboard(tmp, args.data, args.app_dir) as (url, server), sync_playwright() as pw:
        for mode, tabs in plan:
            rec = one_run(mode, tabs, args, url, server.pid, Path(tmp), pw)
            results.append(rec)
            print(json.dumps(rec), flush=True)
    for i, r in enumerate(results):
        if r["tabs"]:
            before = next(x for x in reversed(results[:i]) if not x["tabs"])
            after = next(x for x in results[i:] if not x["tabs"])
            r["ratio"] = round(r["mean_images_per_s"] / statistics.fmean(
                [before["mean_images_per_s"], after["mean_images_per_s"]]), 3)
    summary = {}
    for tabs in args.tabs:
        rs = [r for r in results if r["tabs"] == tabs]
        minutes = sum(r["seconds"] for r in rs) / 60
        summary[f"x{tabs}"] = {
            "ratio": round(statistics.fmean(r["ratio"] for r in rs), 3),
            "server_cpu_s_per_min": round(sum(r["cpu_s"]["server"] for r in rs) / minutes, 1),
            "browser_cpu_s_per_min": round(sum(r["cpu_s"]["browser"] for r in rs) / minutes, 1),
            "lag_median_s": round(statistics.fmean(r["lag_s"]["median"] for r in rs), 2),
            "lag_p90_s": round(statistics.fmean(r["lag_s"]["p90"] for r in rs), 2),
            "lag_max_s": max(r["lag_s"]["max"] for r in rs)}
    write_result(args.out, {"app_dir": str(args.app_dir), "date": time.strftime("%Y-%m-%d %H:%M"),
                            "setup": {k: getattr(args, k)
                                      for k in ("norm", "epochs", "train_limit", "test_limit", "rounds")},
                            "summary": summary, "runs": results})
    print(f"\n{'run':<12} {'img/s':>8} {'ratio':>6} {'server s':>9} {'browser s':>10} {'lag med/p90 s':>14}")
    for r in results:
        lag = f"{r['lag_s']['median']}/{r['lag_s']['p90']}" if r["tabs"] else ""
        print(f"{r['mode']:<12} {r['mean_images_per_s']:>8.0f} {r.get('ratio', ''):>6} "
              f"{r['cpu_s']['server']:>9} {r['cpu_s']['browser']:>10} {lag:>14}")
    print(f"summary: {json.dumps(summary)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
