"""Screenshot a page of the dashboard, as a user sees it, for the README.

    python benchmarks/screenshot.py "experiments?exp=EXP_ID" docs/experiments-batch-size.png \\
        --runs-dir runs-presets [--data PATH] [--height 1400]

Starts ``streamlit run dashboard.py`` on 127.0.0.1 with that runs folder, opens the page in Debian's
Chromium through Playwright, waits for it to finish drawing, and saves a PNG.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path")
    p.add_argument("out")
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--data", default=None)
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1100)
    p.add_argument("--wait", type=float, default=4.0, help="seconds to let charts draw")
    args = p.parse_args(argv)
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "CIFAR_APP_RUNS": str(Path(args.runs_dir).resolve())}
    if args.data:
        env["CIFAR_APP_DATA"] = args.data
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port",
                               str(port), "--server.address", "127.0.0.1"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path="/usr/bin/chromium",
                                         args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": args.width, "height": args.height})
            page.goto(f"{url}/{args.path}")
            page.wait_for_selector("h1", timeout=60_000)
            page.wait_for_timeout(args.wait * 1000)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.out, full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
