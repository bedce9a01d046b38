"""How does the lab cope with a store of many runs? Listing in the CLI and the pages in Chromium.

    python benchmarks/many_runs.py 100 1000 10000 [--repeats 6] [--work DIR] [--app-dir DIR]

For each N, fills a fresh store with N runs: hard-linked copies of the four shipped reference runs
(each a completed 20-epoch run whose metrics log is 186 KB), under new ids. Then, one line each:

- ``index build``: the first ``python -m cifar_app runs --json`` on the store (it builds the run
  index, reading every run's log once: what a store made before the index costs once);
- ``runs --json``: the same command again (median of 3), wall clock of the whole process;
- the Runs, Compare and Experiments pages in Chromium, first and again, wall clock from the
  navigation until the page's table or chart is there, its script run has ended and every chart
  is drawn (``DRAWN``). Each try starts a
  fresh server and a fresh browser (nothing cached), opens the Runs page as soon as the server
  answers, then reloads it, then opens Compare (its first visit: Plotly's code is new to the
  browser) and reloads it, then Experiments likewise; then, on another fresh server and browser,
  Compare as the first page (``compare_cold``). The line gives the median of the tries;
- the server's peak resident memory (VmHWM of the Streamlit process), the highest of the tries.

Each try of the lab is paired with a try of ``benchmarks/floor/`` made just before or after it (the
order alternates; ``--repeats`` is even, so each order comes as often), with the lab's server
options: a bare Streamlit app that draws the same elements as the lab's Runs and Compare pages
(their widgets, a 12-column 50-row table, a four-panel Plotly figure, nine pages' navigation) from
made-up data, with no store behind it and without the lab's frontend work
(``cifar_app/web/preload.py``: its elements' code fetched and run while the script runs, the
server's base URL in the page). It is what Streamlit itself takes on this machine, a minute before
or after, to draw them. The ``floor`` line gives its medians, and the ratios that follow the
lab's time over the floor's: the geometric mean of the pairs' ratios with its 95% interval
(``scipy.stats``), their median and range. (Its Experiments page is a title only: those ratios say
nothing.) Neither server has a dataset.

Writes ``benchmarks/results/many_runs.json`` (or ``--out``) after each size. Wall-clock figures
depend on the VM (they differ up to 3x between VMs of one kind, and by up to half within half an
hour on one): compare absolute figures only within one invocation. The ratios are steadier
(pairing removes the drift that moves both alike), but not free of it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from dashboard_server import CHROMIUM, CHROMIUM_ARGS, ROOT, dashboard
from results_file import write_result
from scipy import stats

from cifar_app.web.app import option_flags  # the lab's server options, for the floor

REFERENCE = ROOT / "cifar_app" / "store" / "reference_runs"
FLOOR = ROOT / "benchmarks" / "floor"
READY = {  # page -> what shows it is drawn
    "": '[data-testid="stDataFrame"]',
    "compare": '[data-testid="stPlotlyChart"]',
    "experiments": "h1",
}


def fill(root: Path, n: int) -> None:
    """``n`` runs in ``root``: the reference runs' files hard-linked under new ids."""
    sources = sorted(p for p in REFERENCE.iterdir() if p.is_dir())
    root.mkdir(parents=True)
    for i in range(n):
        src = sources[i % len(sources)]
        dst = root / f"20300101-000000-{src.name.removeprefix('ref-')}-{i:06d}"
        shutil.copytree(src, dst, copy_function=os.link)


def cli_seconds(root: Path, app_dir: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cifar_app", "runs", "--json", "--runs-dir", str(root)],
                   cwd=app_dir, check=True, stdout=subprocess.DEVNULL)  # -m: app_dir's cifar_app
    return time.perf_counter() - t0


# Drawn: Streamlit's frontend marks its root with the state of the script run (what Streamlit's own
# browser tests wait on), no element is still a placeholder waiting for its code (``stSkeleton``),
# and Plotly has drawn every chart the run sent. (Not "the status widget has gone": the frontend
# shows it when a run has lasted 500 ms, and takes it away with a 200-ms fade, so that a run that
# ends at 0.49 s and one that ends at 0.51 s differed by 0.3 s.) A script that does not compile ends
# the wait too, and fails the try.
DRAWN = """() => ["notRunning", "compilationError"].includes(
        document.querySelector('[data-testid="stApp"]')?.dataset.testScriptState)
    && !document.querySelector('[data-testid="stSkeleton"]')
    && [...document.querySelectorAll('[data-testid="stPlotlyChart"]')]
        .every(c => c.querySelector(".main-svg"))"""


def page_seconds(page, url: str, path: str) -> float:
    """Navigation to drawn (the page's element is there, its script run has ended, no element waits
    for its code, and every chart is drawn: ``DRAWN``), in seconds."""
    t0 = time.perf_counter()
    page.goto(f"{url}/{path}")
    page.wait_for_selector(READY[path], timeout=600_000)
    page.wait_for_function(DRAWN, polling="raf", timeout=600_000)
    seconds = time.perf_counter() - t0
    state = page.get_attribute('[data-testid="stApp"]', "data-test-script-state")
    if page.locator('[data-testid="stException"]').count() or state != "notRunning":
        raise RuntimeError(f"{state}: " + page.inner_text("body")[:2000])
    return seconds


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


PAGES = (("runs", ""), ("compare", "compare"), ("experiments", "experiments"))


def one_try(root: Path, app_dir: Path, pw, no_data: Path, flags: list[str] | None = None
            ) -> tuple[dict[str, float], float]:
    """One fresh server and browser: each page first and again, then (another fresh server and
    browser) Compare as the first page; and the first server's peak RSS. The server has no dataset
    (``no_data``: a folder that does not exist): the pages measured list and plot runs, and a
    dataset would add its first load (torch, the images) to the Runs page's first view."""
    times: dict[str, float] = {"started": time.time()}
    with dashboard(root, no_data, app_dir=app_dir, flags=flags) as (url, server):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for name, path in PAGES:
            for when in ("first", "again"):
                times[f"{name}_{when}_s"] = page_seconds(page, url, path)
        browser.close()
        rss = peak_rss_mb(server.pid)
    with dashboard(root, no_data, app_dir=app_dir, flags=flags) as (url, server):  # Compare first
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        times["compare_cold_s"] = page_seconds(page, url, "compare")
        browser.close()
    return times, rss


def against_floor(lab: list[float], floor: list[float]) -> dict:
    """The lab's page time over the floor's, from tries made in pairs (one right after the other):
    the geometric mean of the pairs' ratios with its 95% interval (a one-sample t interval of the
    log ratios, ``scipy.stats``; it assumes them roughly normal, which a handful cannot show), and,
    not assuming that, their median and range. Pairing removes the part of the VM's drift that
    moves both alike and more slowly than a pair (about a minute); ``correlation`` (of the pairs'
    log times) says how much that was. Each interval is for its own page: over a table of them,
    expect one in twenty to miss."""
    lab_log, floor_log = np.log(np.asarray(lab)), np.log(np.asarray(floor))
    logs = lab_log - floor_log
    ratios = np.exp(logs)
    out = {"ratio": float(np.exp(logs.mean())), "pairs": len(logs), "median": float(np.median(ratios)),
           "min": float(ratios.min()), "max": float(ratios.max())}
    if len(logs) >= 3 and logs.std() > 0:
        ci = stats.ttest_1samp(logs, 0.0).confidence_interval(0.95)
        out.update(low=float(np.exp(ci.low)), high=float(np.exp(ci.high)))
        if lab_log.std() > 0 and floor_log.std() > 0:
            out["correlation"] = float(stats.pearsonr(lab_log, floor_log).statistic)
    return out


def pages(root: Path, app_dir: Path, work: Path, pw, repeats: int) -> tuple[dict, dict]:
    """The pages' times for the lab (its store at ``root``) and for the floor, in ``repeats`` pairs
    of tries whose order alternates (lab then floor, floor then lab: as many of each), for each the
    medians, every try (``samples``, with each try's start time) and the highest peak RSS; for the
    lab, its ratios to the floor (``vs_floor``)."""
    floor_root, no_data = work / "floor-store", work / "no-dataset"
    floor_root.mkdir(parents=True, exist_ok=True)
    samples: dict[str, dict[str, list[float]]] = {"lab": {}, "floor": {}}
    rss: dict[str, list[float]] = {"lab": [], "floor": []}
    for i in range(repeats):
        for who in ("lab", "floor") if i % 2 == 0 else ("floor", "lab"):
            times, peak = (one_try(root, app_dir, pw, no_data) if who == "lab" else
                           one_try(floor_root, FLOOR, pw, no_data, flags=option_flags()))
            rss[who].append(peak)
            for k, v in times.items():
                samples[who].setdefault(k, []).append(v)

    def summary(who: str) -> dict:
        return {**{k: statistics.median(v) for k, v in samples[who].items() if k != "started"},
                "server_peak_rss_mb": max(rss[who]), "samples": samples[who]}

    lab = {**summary("lab"), "vs_floor": {k: against_floor(v, samples["floor"][k])
                                          for k, v in samples["lab"].items() if k != "started"}}
    return lab, summary("floor")


def measure(n: int, work: Path, app_dir: Path, pw, repeats: int) -> tuple[dict, dict]:
    """The lab's row for a store of ``n`` runs, and the floor's, measured alongside."""
    root = work / f"runs-{n}"
    shutil.rmtree(root, ignore_errors=True)
    fill(root, n)
    out = {"runs": n, "index_build_s": cli_seconds(root, app_dir)}
    out["runs_json_s"] = statistics.median(cli_seconds(root, app_dir) for _ in range(3))
    lab, floor = pages(root, app_dir, work, pw, repeats)
    shutil.rmtree(root, ignore_errors=True)
    return {**out, **lab}, {"runs": n, **floor}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sizes", type=int, nargs="+")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--app-dir", type=Path, default=ROOT, help="the checkout to measure")
    ap.add_argument("--repeats", type=int, default=6, help="pairs of tries (a fresh server and "
                    "browser each, lab and floor) per size; even")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "many_runs.json"))
    args = ap.parse_args()
    if args.repeats < 2 or args.repeats % 2:
        ap.error("--repeats must be even (as many pairs with the lab first as with the floor first)")
    from playwright.sync_api import sync_playwright

    work = args.work or Path(tempfile.mkdtemp(prefix="many-runs-"))
    rows, floors = [], []
    command = f"python benchmarks/many_runs.py {' '.join(map(str, args.sizes))} --repeats {args.repeats}"

    def show(row: dict) -> None:
        print("  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                        if k not in ("samples", "vs_floor")), flush=True)

    with sync_playwright() as pw:
        for n in args.sizes:
            row, floor = measure(n, work, args.app_dir.resolve(), pw, args.repeats)
            rows.append(row)
            floors.append(floor)
            show(row)
            show({"floor": n, **{k: v for k, v in floor.items() if k != "runs"}})
            for k, r in row["vs_floor"].items():
                print(f"  {k} lab/floor {r['ratio']:.2f} [{r.get('low', float('nan')):.2f}, "
                      f"{r.get('high', float('nan')):.2f}] median {r['median']:.2f}, range "
                      f"{r['min']:.2f}-{r['max']:.2f} ({r['pairs']} pairs)", flush=True)
            # after each size: a run stopped later keeps what it measured
            write_result(args.out, {"command": command, "repeats": args.repeats, "rows": rows,
                                    "floors": floors, "complete": len(rows) == len(args.sizes)})


if __name__ == "__main__":
    main()
