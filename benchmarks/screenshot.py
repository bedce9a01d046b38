"""Screenshot a page of the dashboard, as a user sees it, for the README.

    python benchmarks/screenshot.py "experiments?exp=EXP_ID" docs/experiments-batch-size.png \\
        --runs-dir runs-presets [--data PATH] [--height 1400]

Starts ``streamlit run dashboard.py`` on 127.0.0.1 with that runs folder, opens the page in Debian's
Chromium through Playwright, waits for it to finish drawing, and saves a PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from dashboard_server import CHROMIUM, CHROMIUM_ARGS, dashboard


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

    with dashboard(args.runs_dir, args.data) as (url, _), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": args.width, "height": args.height})
        page.goto(f"{url}/{args.path}")
        page.wait_for_selector("h1", timeout=60_000)
        page.wait_for_timeout(args.wait * 1000)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=args.out, full_page=True)
        browser.close()
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
