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

With ``--uploads``, each try then goes on as one heavy visitor would: on the Classify page (every
normalization's model side by side) it turns on both of its options (each image alone and in a
batch of test images; Grad-CAM) and drops in ``--uploads`` files at once (``upload_files``: the
largest images a visitor may send, 40-megapixel PNGs that decode whole, and photo-sized JPEGs up
to the bytes a session may upload),
then, on the Misclassified page, explains an image (Grad-CAM and Integrated Gradients). Memory is
read after each, as after a page. Not covered: torchvision's ``cifar-10-batches-py`` format (it
checks its files against the official MD5 sums, and that copy cannot be downloaded on this VM),
several sessions at once.

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


BIG_SIDE = 6324  # a 6,324 x 6,324 image: 39.99 megapixels, under inference.MAX_PIXELS (40)
BIG_FILES = 6    # of them, among the uploads
PHOTO = (2048, 1536, 90)  # the other uploads: width, height, JPEG quality (noise: about 2.8 MB each)
MODELS = 4       # Classify's first choice: the latest model of each normalization (the reference runs)


def upload_files(n: int, folder: Path) -> list[Path]:
    """``n`` files for the Classify page, within what one session may upload (``gate``'s
    ``UPLOAD_FILES`` and ``UPLOAD_BYTES``): ``BIG_FILES`` PNGs of ``BIG_SIDE`` pixels a side (a
    PNG decodes whole: 160 MB of pixels in PIL each, where a JPEG is decoded at a fraction of its
    size), then photo-sized JPEGs of noise, as many as fit in the bytes allowed (which the server
    keeps for the session while they are on the page)."""
    import numpy as np
    from PIL import Image

    from cifar_app.web.gate import UPLOAD_BYTES, UPLOAD_FILES

    if not 0 < n <= UPLOAD_FILES:
        raise SystemExit(f"error: --uploads must be 1 to {UPLOAD_FILES} (a session's upload limit)")
    folder.mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 255, BIG_SIDE, dtype=np.uint8)
    pixels = np.stack([np.broadcast_to(ramp, (BIG_SIDE, BIG_SIDE)),
                       np.broadcast_to(ramp[:, None], (BIG_SIDE, BIG_SIDE)),
                       np.full((BIG_SIDE, BIG_SIDE), 128, np.uint8)], axis=-1)
    files, used = [], 0
    rng = np.random.default_rng(0)
    for k in range(n):
        files.append(folder / (f"big-{k}.png" if k < BIG_FILES else f"photo-{k}.jpg"))
        if k < BIG_FILES:
            Image.fromarray(np.roll(pixels, 97 * k, axis=1)).save(files[-1], compress_level=1)
        else:
            w, h, quality = PHOTO
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(files[-1], quality=quality)
        used += files[-1].stat().st_size
        if used > UPLOAD_BYTES:
            files.pop().unlink()
            break
    return files


def _drawn(page, what: str, t0: float, server, out: list[dict], charts: int = 0) -> None:
    """Wait until ``charts`` Plotly charts are there and the page is drawn (``DRAWN``); record the
    server's memory as ``what``."""
    if charts:
        page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {charts}",
                               polling=250, timeout=1_800_000)
    page.wait_for_function(DRAWN, polling="raf", timeout=1_800_000)
    if page.locator('[data-testid="stException"]').count():
        raise RuntimeError(f"{what}: " + page.inner_text("body")[:2000])
    out.append({"page": what, "seconds": time.perf_counter() - t0, **memory_mb(server.pid)})
    print(f"  {what:14s} {out[-1]['seconds']:6.2f} s  RSS {out[-1]['rss_mb']:5.0f} MB  "
          f"peak {out[-1]['peak_mb']:5.0f} MB", flush=True)


def one_try(root: Path, data: Path, pw, uploads: list[Path]) -> list[dict]:
    """A fresh server and browser; every page once, in the navigation's order; then, with
    ``uploads``, the Classify page's heaviest use and an explanation on Misclassified."""
    out = []
    with dashboard(root, data, timeout_s=120) as (url, server):
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        for spec in PAGES:
            t0 = time.perf_counter()
            page.goto(f"{url}/{spec.route}")
            page.wait_for_selector("h1", timeout=600_000)
            _drawn(page, spec.title, t0, server, out)
        if uploads:
            t0 = time.perf_counter()
            page.goto(f"{url}/classify")
            page.wait_for_selector('input[type="file"]', state="attached", timeout=600_000)
            for label in ("Also score each image alone", "Show where each model looks"):
                page.get_by_text(label).click()
                page.wait_for_function(DRAWN, polling="raf", timeout=600_000)
            page.locator('input[type="file"]').set_input_files([str(f) for f in uploads])
            _drawn(page, f"Classify: {len(uploads)} uploads", t0, server, out, charts=MODELS * len(uploads))
            t0 = time.perf_counter()
            page.goto(f"{url}/misclassified")
            page.wait_for_selector("h1", timeout=600_000)
            page.wait_for_function(DRAWN, polling="raf", timeout=600_000)
            page.get_by_text("Where does the model look?").click()
            page.get_by_text("Integrated Gradients: predicted").wait_for(timeout=600_000)
            _drawn(page, "Misclassified: explained", t0, server, out)
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=int)
    ap.add_argument("--data", type=Path, required=True, help="a CIFAR-10 folder (its cache made once)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--uploads", type=int, default=0, help="then drop this many files on Classify "
                    "(both options on) and explain an image on Misclassified (0: not)")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp folder)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "server_memory.json"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    info = dataset_info(args.data)  # DataError, before anything starts, when there is none
    work = args.work or Path(tempfile.mkdtemp(prefix="server-memory-"))
    root = work / f"runs-{args.runs}"  # removed at the end (not ``--work``: it may hold more)
    fill(root, args.runs)
    files = Path(tempfile.mkdtemp(prefix="uploads-", dir=work))  # removed at the end, like ``root``
    uploads = upload_files(args.uploads, files) if args.uploads else []
    sent = {"files": len(uploads), "big_png": sum(f.suffix == ".png" for f in uploads),
            "mb": sum(f.stat().st_size for f in uploads) / 2**20}
    index_build_s = cli_seconds(root, ROOT)
    print(f"index built in {index_build_s:.1f} s", flush=True)
    tries = []
    try:
        with sync_playwright() as pw:
            for i in range(args.repeats):
                print(f"try {i + 1} of {args.repeats}", flush=True)
                tries.append(one_try(root, args.data, pw, uploads))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(files, ignore_errors=True)
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    peak = max(p["peak_mb"] for t in tries for p in t)
    print(f"peak RSS {peak:.0f} MB", flush=True)
    write_result(args.out, {
        "command": f"python benchmarks/server_memory.py {args.runs} --data DATA --repeats {args.repeats}"
                   + (f" --uploads {args.uploads}" if args.uploads else ""),
        "uploads": sent,
        "runs": args.runs, "index_build_s": index_build_s, "data": info.kind if info.train is None
        else f"{info.kind}, {info.train:,} training and {info.test:,} test images",
        "tries": tries, "peak_mb": peak})


if __name__ == "__main__":
    main()
