"""An exposed server, as a user starts one: ``python -m cifar_app serve --address 0.0.0.0`` with a
token, driven in Chromium over 127.0.0.1 (no traffic leaves this machine).

Without the token nothing is shown, downloaded, uploaded, exported or computed (the default), or
only curves and tables (``--public-read``); with it, every action the sidebar names works: Start,
Stop, Resume, Rename, Delete, the four downloads, Import, Classify, batch dependence, Grad-CAM.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from cifar_app.web import app
from tests.conftest import ROOT, wait_for, write_image_tree
from tests.test_browser import CHROMIUM, free_port, open_page, shot, wait_idle

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: apt-get install chromium"),
]
TOKEN = "tok-3xample-é-2f9Qv7"  # a token with a non-ASCII letter works like any other
PAGES = ["" if p.default else p.name for p in app.PAGES]  # every page of the navigation, by URL path


def serve(base: Path, *flags: str):
    """``python -m cifar_app serve --address 0.0.0.0`` (all interfaces) in its own process group."""
    port = free_port()
    env = {**os.environ, "CIFAR_APP_RUNS": str(base / "runs"), "CIFAR_APP_TOKEN": TOKEN,
           "CIFAR_APP_DATA": str(write_image_tree(base / "data", per_class_train=30, per_class_test=10))}
    log = open(base / "serve.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "cifar_app", "serve", "--address", "0.0.0.0", "--port",
                             str(port), *flags], cwd=base, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200
        except OSError:
            return proc.poll() is not None  # ended: the assertion below says so

    wait_for(healthy, 90, "the exposed server to answer")
    assert proc.poll() is None, (base / "serve.log").read_text()
    return proc, log, url


def open_tools(page, label: str) -> None:
    """Open the Runs page's expander ``label`` (its contents are made when it opens; a link naming
    a run opens both already, and a click would close it)."""
    box = page.locator('[data-testid="stExpander"]').filter(has_text=label)
    box.wait_for(timeout=60_000)
    if box.locator("details[open]").count() == 0:
        box.get_by_text(label).click()
    box.locator("details[open]").wait_for(timeout=60_000)
    wait_idle(page)


def wait_plots(page, n: int, timeout_ms: int = 60_000) -> None:
    """Until the page shows at least ``n`` Plotly figures (fails after ``timeout_ms``)."""
    page.wait_for_function(f"() => document.querySelectorAll('.js-plotly-plot').length >= {n}",
                           timeout=timeout_ms)


def stop(proc, log) -> None:
    os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
    log.close()


@pytest.fixture
def browser_page():
    artifacts = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        pg = context.new_page()
        pg.artifacts = artifacts
        yield pg
        browser.close()


def nothing_offered(page) -> None:
    """No download, upload, chart, table or enabled button in the page's main area."""
    main = page.locator('[data-testid="stMain"]')
    assert main.locator('[data-testid="stDownloadButton"]').count() == 0
    assert main.locator('input[type="file"]').count() == 0
    assert main.locator(".js-plotly-plot").count() == 0
    assert main.locator('[data-testid="stDataFrame"]').count() == 0
    assert all(b.is_disabled() for b in main.get_by_role("button").all())


def live_route_status(page, url: str, path: str) -> int:
    """The status of a live route asked by the page's browser (with its cookies)."""
    return page.evaluate("async (u) => (await fetch(u)).status", f"{url}/{path}")


def stranger_status(url: str, path: str) -> int:
    """The status of a live route asked by another client, without the browser's cookie."""
    try:
        return urllib.request.urlopen(f"{url}/{path}", timeout=10).status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_private_exposed_server_shows_nothing_without_the_token_and_everything_with_it(
        tmp_path, browser_page):
    page = browser_page
    proc, log, url = serve(tmp_path)
    try:
        for path in PAGES:
            open_page(page, url, path)
            assert "Private" in page.inner_text('[data-testid="stSidebar"]')
            nothing_offered(page)
            body = page.inner_text("body")
            assert str(tmp_path) not in body and "Reference BN" not in body
        assert live_route_status(page, url, "lab/runs/ref-batch/live") == 403
        assert live_route_status(page, url, "lab/runs/ref-batch/figures/epochs") == 403
        for odd in ("%C3%A9", "%F0%9F%94%91", "x" * 10_000, "%00", "%20%20"):  # é, an emoji, ...
            open_page(page, url, f"train?token={odd}")
            assert "not the access token" in page.inner_text('[data-testid="stSidebar"]')
            nothing_offered(page)
        shot(page, "exposed-private")

        open_page(page, url, f"train?token={urllib.parse.quote(TOKEN)}")
        page.wait_for_function("() => document.body.innerText.includes('Access token accepted')")
        assert "token" not in page.url
        from cifar_app.web import access

        def key_cookie() -> dict | None:  # set by the server, HttpOnly: the context sees it, scripts don't
            return next((c for c in page.context.cookies() if c["name"] == access.KEY_COOKIE), None)

        wait_for(lambda: key_cookie() is not None, 10, "the server to set the key cookie")
        assert key_cookie()["httpOnly"] and key_cookie()["sameSite"] == "Strict"
        assert access.KEY_COOKIE not in page.evaluate("document.cookie")
        open_page(page, url, "compare")  # a reload keeps the access (a new Streamlit session)
        assert "Access token accepted" in page.inner_text('[data-testid="stSidebar"]')
        with_the_token_every_action_works(page, url, tmp_path)
    finally:
        stop(proc, log)
    assert b"Traceback" not in (tmp_path / "serve.log").read_bytes()


def with_the_token_every_action_works(page, url: str, base: Path) -> None:
    from cifar_app.store.runstore import RunStore

    store = RunStore(base / "runs")
    # Start, then Stop the instant it shows, then Resume to the end
    open_page(page, url, "train")
    page.get_by_role("group", name="Epochs").get_by_role("slider").focus()
    page.keyboard.press("Home")
    for _ in range(2):
        page.keyboard.press("ArrowRight")  # 3 epochs
    wait_idle(page)
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url(re.compile(r"run=\d{8}-\d{6}-batch-"), timeout=60_000)
    run_id = re.search(r"run=([a-z0-9-]+)", page.url).group(1)
    page.get_by_role("button", name="Stop").click(timeout=30_000)
    page.wait_for_function("() => document.body.innerText.includes('stopped')", timeout=60_000)
    assert store.get(run_id).state() == "stopped"
    assert stranger_status(url, f"lab/runs/{run_id}/live") == 403
    assert live_route_status(page, url, f"lab/runs/{run_id}/live") == 200  # the key in its cookie
    page.get_by_role("button", name="Resume from the last checkpoint").click()
    page.wait_for_function("() => document.body.innerText.includes('completed · epoch 3/3')",
                           timeout=240_000)
    assert store.get(run_id).state() == "completed"

    # Rename and Delete (Runs page)
    open_page(page, url, f"?run={run_id}")
    open_tools(page, "Rename or delete a run")
    page.get_by_label("New name").fill("renamed with the token")
    page.keyboard.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Rename").click()
    wait_for(lambda: store.get(run_id).label == "renamed with the token", 90, "the rename")  # a loaded CI

    # the four downloads, each made when clicked, clicked one right after another as a user in a
    # hurry would (a click that reran the page revoked the next button's file: it spun forever)
    open_page(page, url, f"?run={run_id}")
    open_tools(page, "Export or import a run")
    page.get_by_role("button", name="Model (.onnx)").wait_for(state="visible")
    wait_idle(page)
    files = {}
    for label in ("Bundle (.zip)", "Metrics (.csv)", "Predictions (.csv)", "Model (.onnx)"):
        button = page.get_by_role("button", name=label, exact=True)
        try:
            with page.expect_download(timeout=60_000) as download:
                button.click()
        except Exception:
            shot(page, "exposed-download-failed")
            raise
        files[label] = Path(download.value.path()).read_bytes()
    assert zipfile.ZipFile(io.BytesIO(files["Bundle (.zip)"])).read("settings.json")
    assert files["Metrics (.csv)"].startswith(b"epoch,") and b"index,true" in files["Predictions (.csv)"]
    assert len(files["Model (.onnx)"]) > 10_000

    # Import the bundle just downloaded (its id is taken: a new run)
    bundle = base / "bundle.zip"
    bundle.write_bytes(files["Bundle (.zip)"])
    page.locator('[data-testid="stMain"] input[type="file"]').set_input_files(str(bundle))
    wait_idle(page)
    page.get_by_role("button", name="Import", exact=True).click()
    page.wait_for_function("() => document.body.innerText.includes('Imported as')", timeout=30_000)
    imported = [r for r in store.list() if not r.reference and r.id != run_id]
    assert len(imported) == 1

    # Delete the imported one
    open_page(page, url, f"?run={imported[0].id}")
    open_tools(page, "Rename or delete a run")
    wait_idle(page)
    delete = page.get_by_role("button", name="Delete", exact=True)
    for _ in range(3):  # a click during a re-run can be lost: tick the box until Delete is enabled
        page.get_by_text("I want to delete this run and its files").click()
        wait_idle(page)
        try:
            wait_for(delete.is_enabled, 10, "Delete to be enabled")
            break
        except AssertionError:
            continue
    delete.click()
    wait_for(lambda: not (base / "runs" / imported[0].id).exists(), 30, "the delete")

    # Classify an upload
    open_page(page, url, "classify")
    image = base / "upload.png"
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 90, 200)).save(buf, "PNG")
    image.write_bytes(buf.getvalue())
    page.locator('input[type="file"]').set_input_files(str(image))
    page.wait_for_selector(".js-plotly-plot .barlayer", timeout=60_000)

    # Grad-CAM / Integrated Gradients on a misclassified image
    open_page(page, url, f"misclassified?run={run_id}")
    page.get_by_text("Where does the model look?").click()
    page.wait_for_function("() => document.body.innerText.includes('Integrated Gradients')", timeout=60_000)

    # batch dependence, measured in the background, then shown
    open_page(page, url, f"inside?run={run_id}")
    page.get_by_role("button", name=re.compile(r"^Measure ")).first.click()
    wait_for(lambda: store.get(run_id).load_result("batchdep") is not None, 180, "batch dependence")
    assert page.locator('[data-testid="stException"]').count() == 0
    shot(page, "exposed-with-token")


def test_public_read_shows_curves_and_tables_and_hands_out_nothing(tmp_path, browser_page):
    page = browser_page
    proc, log, url = serve(tmp_path, "--public-read")
    try:
        open_page(page, url, "compare")
        assert "Read-only" in page.inner_text('[data-testid="stSidebar"]')
        wait_plots(page, 1)  # the curves: one figure (drawn after the script run ends)
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .cartesianlayer .subplot')"
                               ".length === 4", timeout=60_000)  # its panels, drawn after the figure
        open_page(page, url, "", ready='[data-testid="stDataFrame"]')  # the runs table
        assert page.locator('[data-testid="stDataFrame"]').count() == 1
        assert str(tmp_path) not in page.inner_text("body")  # no server folder
        open_tools(page, "Export or import a run")
        wait_idle(page)
        main = page.locator('[data-testid="stMain"]')
        assert main.locator('[data-testid="stDownloadButton"]').count() == 0
        for label in ("Bundle (.zip)", "Metrics (.csv)", "Predictions (.csv)", "Model (.onnx)"):
            assert page.get_by_role("button", name=label, exact=True).is_disabled()
        assert main.locator('input[type="file"]').is_disabled()  # import
        open_page(page, url, "classify")
        uploader = page.locator('[data-testid="stMain"] input[type="file"]')
        assert uploader.count() == 0 or uploader.is_disabled()
        assert "needs the access token" in page.inner_text("body")
        open_page(page, url, "inside")
        wait_plots(page, 1)
        assert live_route_status(page, url, "lab/runs/ref-batch/live") == 200  # anyone may view
        open_page(page, url, "train")
        assert page.get_by_role("button", name="Start training").is_disabled()
        shot(page, "exposed-public-read")
    finally:
        stop(proc, log)
    assert b"Traceback" not in (tmp_path / "serve.log").read_bytes()
