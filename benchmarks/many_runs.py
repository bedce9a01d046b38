"""How does the lab cope with a store of many runs? Listing in the CLI and the pages in Chromium.

    python benchmarks/many_runs.py 100 1000 10000 [--repeats 3] [--work DIR] [--app-dir DIR]

For each N, fills a fresh store with N runs: hard-linked copies of the four shipped reference runs
(each a completed 20-epoch run whose metrics log is 186 KB), under new ids. Then, one line each:

- ``index build``: the first ``python -m cifar_app runs --json`` on the store (it builds the run
  index, reading every run's log once: what a store made before the index costs once);
- ``runs --json``: the same command again (median of 3), wall clock of the whole process;
- the Runs, Compare and Experiments pages in Chromium, first and again, wall clock from the
  navigation until the page's table or chart is drawn and Streamlit is idle. Each of ``--repeats``
  tries starts a fresh server and a fresh browser (nothing cached), opens the Runs page as soon as
  the server answers, then reloads it, then opens Compare (its first visit: Plotly's code is new to
  the browser) and reloads it, then Experiments likewise; then, on another fresh server and
  browser, Compare as the first page (``compare_cold``). The line gives the median of the tries;
- the server's peak resident memory (VmHWM of the Streamlit process), the highest of the tries.

Then the same pages of ``benchmarks/floor/`` (the ``floor`` line), with the same server options: a
bare Streamlit app that draws what these pages wait for (a 50-row table; four Plotly charts), with
no store behind it and without the lab's preloading of the table's and Plotly's code
(``cifar_app/web/preload.py``). It is what Streamlit itself takes on this machine to draw them.

Writes ``benchmarks/results/many_runs.json``. Wall-clock figures depend on the VM (they differ up
to 3x between VMs of one kind): compare only figures from one invocation.
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

from dashboard_server import CHROMIUM, CHROMIUM_ARGS, ROOT, dashboard
from results_file import write_result

from cifar_app.web.app import option_flags  # the lab's server options, for the floor

REFERENCE = ROOT / "cifar_app" / "store" / "reference_runs"
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


def page_seconds(page, url: str, path: str) -> float:
    """Navigation to drawn and idle, in seconds."""
    t0 = time.perf_counter()
    page.goto(f"{url}/{path}")
    page.wait_for_selector(READY[path], timeout=600_000)
    while page.locator('[data-testid="stStatusWidget"]').count():  # the script run is still going
        page.wait_for_timeout(50)
    if page.locator('[data-testid="stException"]').count():
        raise RuntimeError(page.inner_text("body")[:2000])
    return time.perf_counter() - t0


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pages(root: Path, app_dir: Path, pw, repeats: int, flags: list[str] | None = None) -> dict:
    """The pages' times (median of ``repeats`` fresh servers and browsers; every try under
    ``samples``) and the server's peak RSS (the highest)."""
    samples: dict[str, list[float]] = {}
    rss = []
    for _ in range(repeats):
        with dashboard(root, app_dir=app_dir, flags=flags) as (url, server):
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for name, path in (("runs", ""), ("compare", "compare"), ("experiments", "experiments")):
                for when in ("first", "again"):
                    samples.setdefault(f"{name}_{when}_s", []).append(page_seconds(page, url, path))
            browser.close()
            rss.append(peak_rss_mb(server.pid))
        with dashboard(root, app_dir=app_dir, flags=flags) as (url, server):  # Compare as the first page
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            samples.setdefault("compare_cold_s", []).append(page_seconds(page, url, "compare"))
            browser.close()
    return {**{k: statistics.median(v) for k, v in samples.items()}, "server_peak_rss_mb": max(rss),
            "samples": samples}


def measure(n: int, work: Path, app_dir: Path, pw, repeats: int) -> dict:
    root = work / f"runs-{n}"
    shutil.rmtree(root, ignore_errors=True)
    fill(root, n)
    out = {"runs": n, "index_build_s": cli_seconds(root, app_dir)}
    out["runs_json_s"] = statistics.median(cli_seconds(root, app_dir) for _ in range(3))
    out.update(pages(root, app_dir, pw, repeats))
    shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sizes", type=int, nargs="+")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--app-dir", type=Path, default=ROOT, help="the checkout to measure")
    ap.add_argument("--repeats", type=int, default=3, help="fresh servers and browsers per size")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "many_runs.json"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    work = args.work or Path(tempfile.mkdtemp(prefix="many-runs-"))
    rows = []

    def show(row: dict) -> None:
        print("  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                        if k != "samples"), flush=True)

    with sync_playwright() as pw:
        for n in args.sizes:
            rows.append(measure(n, work, args.app_dir.resolve(), pw, args.repeats))
            show(rows[-1])
        empty = work / "floor-store"
        empty.mkdir(parents=True, exist_ok=True)
        floor = {"runs": "floor", **pages(empty, ROOT / "benchmarks" / "floor", pw, args.repeats,
                                          flags=option_flags())}
        show(floor)
    write_result(args.out, {"command": "python benchmarks/many_runs.py " + " ".join(map(str, args.sizes))
                            + f" --repeats {args.repeats}", "repeats": args.repeats, "rows": rows,
                            "floor": floor})


if __name__ == "__main__":
    main()
