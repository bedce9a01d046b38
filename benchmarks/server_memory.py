"""The server's memory with the dataset, after every page has been visited, at N runs.

    python benchmarks/server_memory.py 10000 --data /path/to/cifar10 [--repeats 2]

Fills a store with N runs (``many_runs.fill``: hard-linked copies of the shipped reference runs)
and builds its run index once (``runs --json``: a store's first listing reads every run's log, a
cost ``many_runs.py`` reports apart). Then, for each try, it starts a fresh server with the
dataset and a fresh Chromium, and opens every page of the navigation (``web.app.PAGES``) in its
order, each as it first shows (no button pressed), until it is drawn (``many_runs.DRAWN``). After
each page it reads the server's resident memory (VmRSS) and its peak so far (VmHWM, which the
issue's "RSS <= 1 GB" judges). The pages that use a model import torch and load the test split
(the Misclassified page evaluates a model on it); the server never loads the training split.

Writes ``benchmarks/results/server_memory.json`` (or ``--out``). Memory, unlike time, barely
depends on the VM's speed; the times beside it do, and are there to show the pages were drawn.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from dashboard_server import CHROMIUM, CHROMIUM_ARGS, ROOT, dashboard
from many_runs import DRAWN, cli_seconds, fill
from results_file import write_result

from cifar_app.core.data import dataset_info
from cifar_app.web.app import PAGES


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of ``pid`` in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
            "peak_mb": int(fields["VmHWM"].split()[0]) / 1024}


def one_try(root: Path, data: Path, pw) -> list[dict]:
    """A fresh server and browser; every page once, in the navigation's order."""
    out = []
    with dashboard(root, data, timeout_s=120) as (url, server):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for spec in PAGES:
            t0 = time.perf_counter()
            page.goto(f"{url}/{spec.route}")
            page.wait_for_selector("h1", timeout=600_000)
            page.wait_for_function(DRAWN, polling="raf", timeout=600_000)
            seconds = time.perf_counter() - t0
            if page.locator('[data-testid="stException"]').count():
                raise RuntimeError(f"{spec.title}: " + page.inner_text("body")[:2000])
            out.append({"page": spec.title, "seconds": seconds, **memory_mb(server.pid)})
            print(f"  {spec.title:14s} {seconds:6.2f} s  RSS {out[-1]['rss_mb']:5.0f} MB  "
                  f"peak {out[-1]['peak_mb']:5.0f} MB", flush=True)
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=int)
    ap.add_argument("--data", type=Path, required=True, help="a CIFAR-10 folder (its cache made once)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "server_memory.json"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    info = dataset_info(args.data)  # DataError, before anything starts, when there is none
    work = args.work or Path(tempfile.mkdtemp(prefix="server-memory-"))
    root = work / f"runs-{args.runs}"  # removed at the end (not ``--work``: it may hold more)
    fill(root, args.runs)
    index_build_s = cli_seconds(root, ROOT)
    print(f"index built in {index_build_s:.1f} s", flush=True)
    tries = []
    try:
        with sync_playwright() as pw:
            for i in range(args.repeats):
                print(f"try {i + 1} of {args.repeats}", flush=True)
                tries.append(one_try(root, args.data, pw))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    peak = max(p["peak_mb"] for t in tries for p in t)
    print(f"peak RSS {peak:.0f} MB", flush=True)
    write_result(args.out, {
        "command": f"python benchmarks/server_memory.py {args.runs} --data DATA --repeats {args.repeats}",
        "runs": args.runs, "index_build_s": index_build_s, "data": info.kind if info.train is None
        else f"{info.kind}, {info.train:,} training and {info.test:,} test images",
        "tries": tries, "peak_mb": peak})


if __name__ == "__main__":
    main()
