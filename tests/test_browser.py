"""End to end in a real browser: ``streamlit run dashboard.py`` driven by Playwright + Debian Chromium.

Opens every page (no exception box), trains a quick run from the Train page and sees its curves and
completion, browses its misclassified grid and classifies an uploaded image. Screenshots of each
page go to ``$ARTIFACTS_DIR`` (default ``artifacts/``, not committed).
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from cifar_app.web import app
from tests.conftest import REAL_DATA, write_image_tree

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing: apt-get install chromium"),
]
# Every page of the app's navigation (web.app.PAGES: a new page is opened too) by its URL path, but
# Inside, whose charts need runs with probe records (test_a_hostile_label_is_text_on_every_page
# opens it with them); "model" first: a deep link opened before the entry page must still get the
# app's navigation.
PAGES = {p.name: "" if p.default else p.name
         for p in sorted(app.PAGES, key=lambda p: p.name != "model") if p.name != "inside"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(base: Path, **extra_env: str):
    data = REAL_DATA or str(write_image_tree(base / "data", per_class_train=30, per_class_test=10))
    port = free_port()
    env = {**os.environ, "CIFAR_APP_RUNS": str(base / "runs"), "CIFAR_APP_DATA": data, **extra_env}
    log = open(base / "streamlit.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        raise RuntimeError((base / "streamlit.log").read_text())
    return proc, log, url


def stop_server(proc, log) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("browser")
    proc, log, url = start_server(base)
    yield url, base
    stop_server(proc, log)


@pytest.fixture(scope="module")
def page(server):
    artifacts = Path(os.environ.get("ARTIFACTS_DIR", ROOT / "artifacts"))
    artifacts.mkdir(parents=True, exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--headless", "--no-sandbox", "--disable-gpu"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.artifacts = artifacts
        yield pg
        browser.close()


def open_page(page, url: str, path: str, ready: str = "h1") -> None:
    page.goto(f"{url}/{path}")
    page.wait_for_selector(ready, timeout=120_000)
    page.wait_for_timeout(1500)  # let the script run finish drawing
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0, page.inner_text("body")[:2000]


def wait_idle(page, timeout_s: float = 60) -> None:
    """Wait until Streamlit's 'running' indicator is gone."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if page.locator('[data-testid="stStatusWidget"]').count() == 0:
            return
        page.wait_for_timeout(300)
    raise AssertionError(f"the script still runs after {timeout_s} s")


def shot(page, name: str) -> None:
    page.screenshot(path=str(page.artifacts / f"{name}.png"), full_page=True)


def test_the_server_answers_on_a_kept_alive_connection_without_waiting_for_an_ack(server):
    """With Nagle's algorithm on (Streamlit's socket: ``web.nodelay``), each request after the first
    on a kept-alive connection, as browsers keep them, took 44 ms: the body waited for the client's
    delayed ACK of the headers. Against requests on new connections made meanwhile, so that a
    loaded machine slows both alike: the delay is 40 ms of a kernel timer, the margin 25."""
    import http.client
    import statistics

    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    kept, fresh = [], []
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    for _ in range(9):
        for times, c in ((kept, conn), (fresh, http.client.HTTPConnection(host, int(port), timeout=10))):
            t = time.perf_counter()
            c.request("GET", "/_stcore/health")
            assert c.getresponse().read() == b"ok"
            times.append(time.perf_counter() - t)
            if c is not conn:
                c.close()
    conn.close()
    assert statistics.median(kept[1:]) < statistics.median(fresh) + 0.025, (kept, fresh)


def test_every_page_opens_without_an_exception(server, page):
    url, _ = server
    for name, path in PAGES.items():
        open_page(page, url, path)
        assert "Misclassified" in page.locator('[data-testid="stSidebarNav"]').inner_text()
        if name == "claims":  # the shipped results and runs draw every testable claim's evidence
            # nine figures are many for a loaded machine: wait for them (failing after 120 s)
            page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 9",
                                   timeout=120_000)
        shot(page, f"empty-{name}")


ELEMENT_TESTID = {"DataFrame": "stDataFrame", "PlotlyChart": "stPlotlyChart", "Multiselect": "stMultiSelect",
                  "TextInput": "stTextInput", "Selectbox": "stSelectbox", "NumberInput": "stNumberInput",
                  "Button": "stButton", "Radio": "stRadio"}  # PageSpec.draws -> DOM


def first_view(browser, url: str, spec) -> tuple[list[str], object]:
    """A page's first view in a fresh browser context (nothing cached): what it requested, in order
    ("websocket" where the websocket opened), once it is drawn, idle and its network quiet; and the
    page (its context closed by the caller)."""
    context = browser.new_context()
    fresh = context.new_page()
    events: list[str] = []
    fresh.on("websocket", lambda ws: events.append("websocket"))
    fresh.on("request", lambda r: events.append(urllib.parse.urlsplit(r.url).path.rsplit("/", 1)[-1]))
    fresh.goto(f"{url}/{spec.route}")
    fresh.wait_for_selector("h1", timeout=120_000)
    fresh.wait_for_timeout(500)  # the script's first messages (then the idle wait below is for real)
    wait_idle(fresh)
    fresh.wait_for_load_state("networkidle")  # code asked for by the last messages has come too
    assert "websocket" in events, events
    return events, fresh


def check_first_view(browser, url: str, spec, drawn: tuple[str, ...]) -> None:
    """``drawn`` is drawn; the code of what the page preloads was asked for before the websocket
    opened, and no element's code is asked for after it (the declaration is complete)."""
    events, fresh = first_view(browser, url, spec)
    try:
        for element in drawn:  # drawn by now, or soon (the code of Plotly takes a second to run)
            fresh.wait_for_selector(f'[data-testid="{ELEMENT_TESTID[element]}"]', timeout=30_000)
        fresh.wait_for_load_state("networkidle")
        opened = events.index("websocket")
        for element in spec.preloads:
            asked = next(i for i, name in enumerate(events) if name.startswith(f"{element}."))
            assert asked < opened, (spec.name, element, events[:opened + 1])
        late = [name for name in events[opened:] if name.endswith((".js", ".mjs"))]
        assert late == [], (spec.name, "element code asked for once the script ran: not declared", *late)
    finally:
        fresh.context.close()


DECLARED = [p for p in app.PAGES if p.preloads]


@pytest.mark.parametrize("spec", DECLARED, ids=[p.name for p in DECLARED])
def test_a_page_s_elements_code_comes_with_its_html(server, page, spec):
    """On a first visit (a fresh browser: nothing cached), the code of the elements a page declares
    (``PageSpec.draws`` and ``may_draw``) is requested before the websocket opens, not after the
    script's first message names them; what it always draws (``draws``) is drawn (no preload for
    nothing); and no other element's code is fetched later. The store: the shipped reference runs
    (a store with runs, as ``draws`` assumes), and whatever earlier tests made."""
    url, _ = server
    assert all(e in ELEMENT_TESTID for e in spec.preloads)
    open_page(page, url, spec.route)  # the server's own first loads (the dataset's progress bar) done
    check_first_view(page.context.browser, url, spec, spec.draws)


@pytest.fixture(scope="module")
def crowded_server(tmp_path_factory):
    """A server whose store has more than a page of runs and an experiment: what a page may draw
    (``PageSpec.may_draw``) is drawn."""
    from cifar_app.core.records import EpochStats
    from cifar_app.core.settings import TrainSettings
    from cifar_app.lab.experiments import ExperimentStore
    from cifar_app.store.runstore import RunStore
    from cifar_app.web.tables import PAGE_SIZE

    base = tmp_path_factory.mktemp("crowded")
    store = RunStore(base / "runs", reference_root=None)
    for i in range(PAGE_SIZE + 3):
        run = store.create(TrainSettings(norm=["batch", "group", "layer"][i % 3], epochs=2), label=f"run {i}")
        run.append_metrics(EpochStats(1, 1.0, 0.5, 1.0, 0.3, 0.1, 1.0, 10.0))
        run.update_status(state="completed")
    ExperimentStore(store).create("crowd", base={"epochs": 1}, grid={"norm": ["batch", "group"]})
    proc, log, url = start_server(base, CIFAR_APP_REFERENCE_RUNS="")
    yield url
    stop_server(proc, log)


@pytest.mark.parametrize("spec", DECLARED, ids=[p.name for p in DECLARED])
def test_on_a_crowded_store_what_a_page_may_draw_is_drawn_and_came_with_its_html(crowded_server, page, spec):
    open_page(page, crowded_server, spec.route)
    check_first_view(page.context.browser, crowded_server, spec, spec.preloads)


@pytest.mark.parametrize("path", [p.route for p in app.PAGES if not p.default] + ["claims?x=%C3%BC"])
def test_a_page_asks_for_the_server_once_at_its_base_url(server, page, path):
    """A page other than the default one asks the server's health once, at the server's root (its
    base URL, which ``preload`` writes into the page): not first at its own URL (a 404, then 100 ms
    of waiting, then the root: 0.2 s of every first view). (Streamlit redirects ``/compare/`` to
    ``/compare``; the heads for a trailing slash are for a proxy that adds one.)"""
    url, _ = server
    asked: list[str] = []
    fresh = page.context.browser.new_page()
    fresh.on("request", lambda r: asked.append(urllib.parse.urlsplit(r.url).path))
    try:
        fresh.goto(f"{url}/{path}")
        fresh.wait_for_selector("h1", timeout=120_000)
    finally:
        fresh.close()
    pings = [a for a in asked if a.endswith(("/_stcore/health", "/_stcore/host-config"))]
    assert pings == ["/_stcore/health", "/_stcore/host-config"]


def test_compare_runs_plotly_s_code_while_its_script_s_messages_are_still_coming(server, page):
    """Plotly's code (4.7 MB; a second of this VM's browser) runs as the Compare page's websocket
    opens, in parallel with its script, not after the script's messages name a chart: with every
    message from the server held back, Plotly is loaded, and no chart is drawn."""
    url, _ = server
    fresh = page.context.browser.new_context().new_page()  # nothing cached
    held: list = []
    fresh.route_web_socket("**/_stcore/stream",
                           lambda ws: ws.connect_to_server().on_message(lambda m: held.append(m)))
    try:
        fresh.goto(f"{url}/compare")
        fresh.wait_for_function("() => typeof window.Plotly === 'object'", timeout=60_000)
        assert fresh.locator('[data-testid="stPlotlyChart"]').count() == 0
        assert fresh.locator("h1").count() == 0  # nothing of the script reached the page
    finally:
        fresh.context.close()


@pytest.mark.parametrize("width", [1280, 1920])
def test_every_page_at_other_widths_has_no_overlapping_chart_titles(server, page, width):
    url, _ = server
    page.set_viewport_size({"width": width, "height": 1000})
    try:
        for path in PAGES.values():
            open_page(page, url, path)
            assert page.evaluate(OVERLAPS, ".annotation-text, .gtitle") == [], path
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})


def test_train_a_quick_run_then_browse_its_mistakes_and_classify(server, page):
    url, base = server
    open_page(page, url, "train")
    # one epoch on the first 500 training images, scored on the first 1,000 test images
    page.get_by_role("group", name="Epochs").get_by_role("slider").focus()
    page.keyboard.press("Home")  # 1 epoch
    wait_idle(page)
    choose(page, "Quick demo: training images", "first 500")
    choose(page, "Test images per epoch", "first 1,000")
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url(re.compile(r"run=\d{8}-\d{6}-batch-"), timeout=60_000)  # the new run is shown
    page.wait_for_function("() => document.body.innerText.includes('completed · epoch 1/1')",
                           timeout=240_000)
    wait_idle(page)
    page.wait_for_timeout(2500)  # the live fragment redraws every 2 s
    assert page.locator('[data-testid="stException"]').count() == 0
    points = ".js-plotly-plot .scatterlayer .trace .points path"
    page.wait_for_selector(points, timeout=30_000)  # the curves got points
    assert page.locator(points).count() >= 2
    body = page.inner_text("body")
    assert "epoch 1/1" in body and "Test accuracy" in body
    shot(page, "train")
    run_id = re.search(r"run=([a-z0-9-]+)", page.url).group(1)

    open_page(page, url, f"misclassified?run={run_id}")
    page.wait_for_selector('[data-testid="stImage"] img', timeout=60_000)
    # confusion matrix + per-class bars: drawn after the images, so waited for, not counted at once
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 2",
                           timeout=60_000)
    shot(page, "misclassified")

    open_page(page, url, "compare")
    page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .cartesianlayer .subplot')"
                           ".length === 4", timeout=60_000)  # one figure, its four panels
    assert page.locator(".js-plotly-plot").count() == 1
    shot(page, "compare")

    open_page(page, url, f"classify?run={run_id}")
    image = base / "upload.png"
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 90, 200)).save(buf, "PNG")
    image.write_bytes(buf.getvalue())
    page.locator('input[type="file"]').set_input_files(str(image))
    page.wait_for_selector(".js-plotly-plot .barlayer", timeout=60_000)
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    shot(page, "classify")

    open_page(page, url, "", ready='[data-testid="stDataFrame"]')  # the runs table (a canvas)
    assert page.locator('[data-testid="stDataFrame"]').count() == 1
    shot(page, "runs")
    open_page(page, url, "model")
    shot(page, "model")


def test_a_tiny_custom_sweep_from_the_page_fills_its_plot(server, page):
    url, _ = server
    open_page(page, url, "experiments")
    page.get_by_text("custom", exact=True).click()
    wait_idle(page)
    grid = page.get_by_label("Grid: one FIELD=V1,V2,... per line")
    grid.fill("norm=batch,layer")
    base = page.get_by_label("Settings for every point: one FIELD=VALUE per line")
    base.fill("epochs=1\ntrain_limit=300\ntest_limit=200\nbatch_size=50")
    page.get_by_text("2 points", exact=False).first.click()  # blur: the text areas commit
    wait_idle(page)
    page.wait_for_function("() => document.body.innerText.includes('2 points')")
    page.get_by_role("button", name="Start experiment").click()
    page.wait_for_url(re.compile(r"exp=exp-"), timeout=60_000)
    page.wait_for_function("() => document.body.innerText.includes('2 completed')", timeout=240_000)
    page.wait_for_timeout(2500)  # the sweep's end re-runs the page once
    wait_idle(page)
    points = ".js-plotly-plot .scatterlayer .trace .points path"
    page.wait_for_selector(points, timeout=30_000)
    assert page.locator(points).count() >= 2  # one point per norm on the plot
    assert page.locator('[data-testid="stException"]').count() == 0
    shot(page, "experiments")


def choose(page, label: str, option: str, tries: int = 5) -> None:
    """Pick ``option`` in the Streamlit select box labelled ``label``, and wait until the box shows
    it. A re-run of the page that starts after ``wait_idle`` looked (the previous widget's) redraws
    the box and closes its open list: then the list is opened again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    for _ in range(tries):
        wait_idle(page)
        page.get_by_role("combobox", name=label).click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            continue
        expect(page.get_by_role("combobox", name=label)).to_have_value(option, timeout=30_000)
        wait_idle(page)
        return
    raise AssertionError(f"could not choose {option!r} in {label!r} in {tries} tries")


def test_behind_a_token_the_app_is_read_only_until_the_token_is_given(tmp_path, page):
    """The exposed mode, forced on loopback as behind a reverse proxy (no traffic leaves 127.0.0.1),
    with --public-read (the private default: tests/test_browser_exposed.py)."""
    proc, log, url = start_server(tmp_path, CIFAR_APP_REQUIRE_TOKEN="1",
                                  CIFAR_APP_TOKEN="tok-3xample-2f9Qv7", CIFAR_APP_PUBLIC_READ="1")
    try:
        open_page(page, url, "train")
        assert "Read-only" in page.inner_text('[data-testid="stSidebar"]')
        assert page.get_by_role("button", name="Start training").is_disabled()
        page.get_by_label("Access token").fill("not-it")
        page.keyboard.press("Enter")
        page.wait_for_function("() => document.body.innerText.includes('not the access token')")
        assert page.get_by_role("button", name="Start training").is_disabled()
        open_page(page, url, "train?token=tok-3xample-2f9Qv7")
        page.wait_for_function("() => document.body.innerText.includes('Access token accepted')")
        assert page.get_by_role("button", name="Start training").is_enabled()
        assert "token" not in page.url  # the token does not stay in the address bar
        shot(page, "token-unlocked")
    finally:
        stop_server(proc, log)


def test_damaged_evidence_marks_its_claims_and_the_page_still_renders(tmp_path, page):
    """Every shipped results file damaged in another way (a string, NaN, 1e400, a duplicate point, a
    truncated file, a landscape record without its blocks): the Claims page shows each damaged row
    with its file and reason, every other row, and no exception box."""
    import json

    shipped = ROOT / "cifar_app" / "store" / "reference_experiments"
    folder = tmp_path / "shipped"
    folder.mkdir()
    for f in shipped.glob("preset_*.json"):
        folder.joinpath(f.name).write_bytes(f.read_bytes())

    def damage(name: str, edit) -> None:
        d = json.loads((shipped / name).read_text())
        text = edit(d)
        folder.joinpath(name).write_text(text if isinstance(text, str) else json.dumps(d))

    damage("preset_groups.json", lambda d: d["points"][0].update(final_test_acc="0.5"))
    damage("preset_batch-size.json",
           lambda d: json.dumps(d).replace('"final_test_acc": 0.', '"final_test_acc": NaN, "x": 0.', 1))
    damage("preset_learning-rate.json", lambda d: json.dumps(d)[:500])
    damage("preset_regularization.json", lambda d: d["points"].append(d["points"][0]))
    damage("preset_landscape.json",
           lambda d: next(p for p in d["points"] if p.get("landscape"))["landscape"][0].pop("blocks"))
    proc, log, url = start_server(tmp_path, CIFAR_APP_REFERENCE_EXPERIMENTS=str(folder))
    try:
        open_page(page, url, "claims")
        names = ["preset_groups.json", "preset_batch-size.json", "preset_learning-rate.json",
                 "preset_regularization.json", "preset_landscape.json"]
        # the rows are drawn one after another, in no order the damaged files decide: wait for every
        # damaged file's name and every claim's row (its opening quote) together, or fail at the timeout
        from cifar_app.lab.claims import CLAIMS

        page.wait_for_function(
            "([names, rows]) => { const t = document.body.innerText;"
            " return names.every(n => t.includes(n)) && t.split('\u201c').length - 1 >= rows; }",
            arg=[names, len(CLAIMS)], timeout=60_000)
        body = page.inner_text("body")
        for name in names:
            assert name in body, name
        assert "Traceback" not in body and page.locator('[data-testid="stException"]').count() == 0
        assert body.count("“") >= len(CLAIMS)  # every claim's row is there
        shot(page, "claims-damaged")
    finally:
        stop_server(proc, log)


def test_a_live_run_is_followed_in_place_and_polling_ends_with_it(server, page):
    """The Train page follows a running run without Streamlit re-runs: the live view
    (cifar_app/web/live_view.js) asks the read-only routes for news and patches the progress line and
    the figures in place (the same chart nodes, more points). Only a new epoch re-runs the small
    fragment with the epoch figures; when the run ends the page redraws it as finished and stops
    asking. The 'worker' is the test itself, appending records through the run store."""
    from cifar_app.core.records import BatchStats, EpochStats
    from cifar_app.core.settings import TrainSettings
    from cifar_app.store.runstore import RunStore

    url, base = server
    run = RunStore(base / "runs", reference_root=None).create(TrainSettings(norm="group", epochs=5),
                                                               label="live in place check")
    run.update_status(state="running", pid=os.getpid(), heartbeat=time.time())

    def batches(n: int) -> None:
        run.append_metrics(*[BatchStats((n - 1) * 10 + i, n, i, 10, 2.0 - n / 10, 0.1, time.time())
                             for i in range(1, 11)])
        run.heartbeat()

    def epoch(n: int) -> None:
        run.append_metrics(EpochStats(n, 2.0 - n / 10, 0.3 + n / 20, 1.9 - n / 10, 0.3 + n / 20, 5.0,
                                      1000.0, 0.1, 1.9 - n / 10))

    frames, asked = [], []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda f: frames.append(time.time())))
    page.on("request", lambda r: asked.append(time.time()) if "/lab/runs/" in r.url else None)
    charts = "[...document.querySelectorAll('.lab-chart.js-plotly-plot')]"
    points = f"{charts}.map(e => e._fullData[0].x.length)"
    batches(1)
    epoch(1)
    open_page(page, url, f"train?run={run.id}")
    page.wait_for_function(f"() => {charts}.length === 2", timeout=30_000)  # epochs, batches
    page.evaluate(f"() => {charts}.forEach(e => {{ e.__mark = 1 }})")
    frames.clear()
    batches(2)  # a new batch, no new epoch: the line and the batch figure follow, nothing re-runs
    page.wait_for_function("() => document.body.innerText.includes('epoch 2/5 · batch 10/10')",
                           timeout=5_000)
    page.wait_for_function(f"() => {points}[1] === 20", timeout=15_000)
    assert frames == [], "a Streamlit re-run without a new epoch"
    epoch(2)  # a new epoch: the epoch figure grows in place, the fragment shows its accuracy
    page.wait_for_function(f"() => {points}[0] === 2", timeout=10_000)
    page.wait_for_function("() => document.body.innerText.includes('40.00%')", timeout=10_000)
    assert page.evaluate(f"() => {charts}.every(e => e.__mark === 1)"), "a chart was re-mounted"
    run.update_status(state="completed")
    page.wait_for_function(  # drawn as finished, by Streamlit
        "() => !document.querySelector('.lab-live') && [...document.querySelectorAll("
        "'[data-testid=\"stProgress\"]')].some(e => e.textContent.includes('completed · epoch 2/5'))",
        timeout=15_000)
    wait_idle(page)
    asked.clear()
    # a live view asks every 1 s, every 3 s when quiet: a window of two quiet intervals and more
    # would have seen at least two of its requests
    page.wait_for_timeout(7_000)
    assert asked == [], "still polling a finished run"
    assert page.locator('[data-testid="stException"]').count() == 0
    shot(page, "train-live")

def test_a_watched_run_that_is_damaged_or_deleted_is_reported_not_crashed(server, page):
    """Hostile: while the Train page follows a run, its log is overwritten with garbage (the page
    names the damaged file), and another run's folder is removed by hand (the page moves on)."""
    import shutil

    from cifar_app.core.records import BatchStats
    from cifar_app.core.settings import TrainSettings
    from cifar_app.store.runstore import RunStore

    url, base = server
    store = RunStore(base / "runs", reference_root=None)
    runs = [store.create(TrainSettings(norm="layer", epochs=3), label=f"hostile {i}") for i in (1, 2)]
    for run in runs:
        run.update_status(state="running", pid=os.getpid(), heartbeat=time.time())
        run.append_metrics(BatchStats(1, 1, 1, 10, 2.3, 0.1, time.time()))
    damaged, deleted = runs

    open_page(page, url, f"train?run={damaged.id}")
    page.wait_for_selector('[data-testid="labProgressText"]', timeout=30_000)
    (damaged.path / "metrics.jsonl").write_bytes(b"\x00\xff garbage\n")
    page.wait_for_function("() => !document.querySelector('.lab-live') && "
                           "document.body.innerText.includes('metrics.jsonl')", timeout=15_000)
    assert page.locator('[data-testid="stException"]').count() == 0

    open_page(page, url, f"train?run={deleted.id}")
    page.wait_for_selector('[data-testid="labProgressText"]', timeout=30_000)
    shutil.rmtree(deleted.path)
    page.wait_for_url(lambda u: deleted.id not in u, timeout=15_000)
    wait_idle(page)
    assert page.locator('[data-testid="stException"]').count() == 0


OVERLAPS = """(sel) => {
  const out = [];
  for (const plot of document.querySelectorAll('.js-plotly-plot')) {
    const boxes = [...plot.querySelectorAll(sel)].map(e => e.getBoundingClientRect())
      .filter(b => b.width > 0);
    const svg = plot.getBoundingClientRect();
    boxes.forEach((a, i) => {
      if (a.left < svg.left - 1 || a.right > svg.right + 1) out.push(['outside', a.left, a.right]);
      boxes.slice(i + 1).forEach(b => {
        if (a.left < b.right && b.left < a.right && a.top < b.bottom && b.top < a.bottom)
          out.push(['overlap', a.left, a.right, b.left, b.right]);
      });
    });
  }
  return out;
}"""


@pytest.mark.parametrize("width", [1280, 1400, 1920])
def test_panel_titles_and_images_neither_overlap_nor_get_cut_off(server, page, width):
    """Issue 17: on Inside the four panels' run titles ran into each other; on Classify with all
    normalizations the model input was cut off by the first chart and chart titles were truncated."""
    url, base = server
    page.set_viewport_size({"width": width, "height": 1000})
    try:
        open_page(page, url, "inside")
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot').length >= 3",
                               timeout=30_000)
        assert page.evaluate(OVERLAPS, ".annotation-text, .gtitle") == []
        open_page(page, url, "classify")
        image = base / "upload.png"
        Image.new("RGB", (64, 48), (30, 90, 200)).save(image)
        page.locator('input[type="file"]').set_input_files(str(image))
        page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .barlayer').length >= 4",
                               timeout=60_000)
        wait_idle(page)
        assert page.evaluate(OVERLAPS, ".gtitle") == []
        charts = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')]"
                               ".map(e => e.getBoundingClientRect().toJSON())")
        images = page.evaluate("() => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
                               ".map(e => e.getBoundingClientRect().toJSON())")
        assert len(images) >= 2 and len(charts) >= 4
        for im in images:  # the preview and the model input stand clear of every chart
            assert all(im["right"] <= c["left"] or c["right"] <= im["left"] or im["bottom"] <= c["top"]
                       or c["bottom"] <= im["top"] for c in charts), (im, charts)
        shot(page, f"classify-all-{width}")
    finally:
        page.set_viewport_size({"width": 1400, "height": 1000})


HOSTILE = '<b>B</b><a href="https://example.com/a">A</a> ![t](/any/url) :red[RED] <i>I</i>'
MARKUP_FROM_LABEL = """() => {
  const text = (e) => e.textContent.trim();
  const bold = (e) => e.tagName !== 'tspan' || getComputedStyle(e).fontWeight >= 600
    || (e.getAttribute('style') || '').includes('bold');
  return {
    links: [...document.querySelectorAll('a')].filter(a => ((a.getAttribute('href') || '')
      + (a.getAttribute('xlink:href') || '')).includes('example.com')).length,
    bold: [...document.querySelectorAll('b, strong, tspan')].filter(e => text(e) === 'B' && bold(e)).length,
    italic: [...document.querySelectorAll('i, em')].filter(e => text(e) === 'I').length,
    images: [...document.querySelectorAll('img')].filter(e => e.src.includes('/any/url')).length,
    red: [...document.querySelectorAll('span, p')].filter(e => text(e) === 'RED').length,
  };
}"""


def test_a_hostile_label_is_text_on_every_page(tmp_path, page):
    """A run named with HTML, a markdown link and image, and a colour directive: on every page it
    shows as typed, with no link, no bold or italic from it, no red text and no request for its
    image (Plotly legends and titles, markdown captions and buttons alike)."""
    data = write_image_tree(tmp_path / "data", per_class_train=20, per_class_test=5)
    env = {**os.environ, "CIFAR_APP_RUNS": str(tmp_path / "runs"), "CIFAR_APP_DATA": str(data)}
    subprocess.run([sys.executable, "-m", "cifar_app", "train", "--norm", "batch", "--epochs", "1",
                    "--batch-size", "32", "--label", HOSTILE, "--data", str(data), "--runs-dir",
                    str(tmp_path / "runs")], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    proc, log, url = start_server(tmp_path, CIFAR_APP_REFERENCE_RUNS="")
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url))
    try:
        for name, path in {**PAGES, "inside": "inside"}.items():  # every page
            open_page(page, url, path)
            if name in ("compare", "inside"):  # their figures carry the label: wait until drawn
                page.wait_for_function("() => document.querySelectorAll('.js-plotly-plot .main-svg').length"
                                       " >= 2", timeout=60_000)
            found = page.evaluate(MARKUP_FROM_LABEL)
            assert found == {"links": 0, "bold": 0, "italic": 0, "images": 0, "red": 0}, (name, found)
        assert not [u for u in fetched if "/any/url" in u or "example.com" in u]
        shot(page, "hostile-label-runs")
    finally:
        stop_server(proc, log)


def test_back_takes_one_press_off_a_page_whose_run_was_picked(server, page):
    """The Train page wrote its default run into the address (a step in the history): Back took
    two presses to leave it. And after a run was picked, Back showed the address without it but
    the picker kept the pick: the browser sends the value it shows with the rerun, so a dropped
    state took it. One press now undoes the pick, the next leaves the page."""
    from cifar_app.core.settings import TrainSettings
    from cifar_app.store.runstore import RunStore
    from tests.conftest import wait_for

    url, base = server
    store = RunStore(base / "runs", reference_root=None)
    for _ in range(2):
        store.create(TrainSettings(epochs=2), label="back and forth")
    open_page(page, url, "")
    open_page(page, url, "train")  # a step in the history, as the sidebar's link makes
    box = page.get_by_role("combobox", name="Run", exact=True)
    box.wait_for(timeout=60_000)
    wait_idle(page)
    first = box.input_value()
    for attempt in range(3):  # a click during a re-run can be lost: pick again until it lands
        box.click()
        page.get_by_role("option").nth(1).click()
        try:
            wait_for(lambda: "run=" in page.url, 20, "the picked run in the address")
            break
        except AssertionError:
            if attempt == 2:
                raise
            wait_idle(page)
    assert box.input_value() != first
    page.go_back()
    wait_for(lambda: page.url.endswith("/train") and box.input_value() == first, 60,
             "the default run back, with no run in the address")
    page.go_back()
    wait_for(lambda: page.url.rstrip("/") == url, 60, "the Runs page")
