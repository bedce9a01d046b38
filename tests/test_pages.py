"""Every page renders under Streamlit's AppTest: with no runs, a completed run and a running run."""

import io
import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cifar_app.core.records import BatchStats
from cifar_app.core.settings import TrainSettings
from cifar_app.web import app
from tests.conftest import ROOT

PAGE = {p.name: str(p.path) for p in app.PAGES}  # the app's own page list
PAGES = [PAGE[n] for n in ("home", "train", "compare", "misclassified", "classify", "model")]


def run_page(path: str, query: dict | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / path), default_timeout=60)
    for k, v in (query or {}).items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [i.value for i in at.info] + [w.value for w in at.warning]
    parts += [e.value for e in at.error] + [s.value for s in at.success] + [c.value for c in at.caption]
    return "\n".join(str(p) for p in parts).replace("\\", "")  # as shown: markdown escapes undone


@pytest.fixture
def app_env(pages, tmp_path):
    from tests.conftest import write_image_tree

    pages.use(tmp_path / "runs", write_image_tree(tmp_path / "data", per_class_train=4, per_class_test=2))
    return tmp_path


@pytest.fixture
def completed_env(app_env, monkeypatch):
    """The app environment plus one completed run (trained on the environment's tiny data)."""
    from cifar_app.core.data import load_cifar10
    from cifar_app.core.settings import TrainSettings
    from cifar_app.store.jobs import execute_run
    from cifar_app.store.runstore import RunStore

    store = RunStore(app_env / "runs", reference_root=None)
    run = store.create(TrainSettings(norm="group", epochs=1, batch_size=8, device="cpu"), label="tiny GN")
    execute_run(store, run.id, data=load_cifar10(os.environ["CIFAR_APP_DATA"]))
    return run


EMPTY_HINTS = {PAGE["home"]: "No runs yet", PAGE["train"]: "No runs yet",
               PAGE["compare"]: "No run has finished",
               PAGE["misclassified"]: "No trained model",
               PAGE["classify"]: "No trained model", PAGE["model"]: "49,914"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: Path(p).stem)
def test_pages_with_no_runs_say_what_to_do(app_env, page):
    at = run_page(page)
    assert EMPTY_HINTS[page] in texts(at) + str([m.value for m in at.metric])


def test_dashboard_entry_opens_the_runs_page(app_env):
    at = run_page("dashboard.py")
    assert "CIFAR-10 Normalization Lab" in [t.value for t in at.title]
    assert "CIFAR-10 found: 40 training and 20 test images" in texts(at)


def test_missing_dataset_offers_the_download(app_env, monkeypatch, tmp_path):
    monkeypatch.setenv("CIFAR_APP_DATA", str(tmp_path / "nothing-here"))
    at = run_page(PAGE["home"])
    assert "not in" in texts(at) and any(b.label == "Download CIFAR-10" for b in at.button)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: Path(p).stem)
def test_pages_with_a_completed_run(completed_env, page):
    at = run_page(page, {"run": completed_env.id})
    if page == PAGE["misclassified"]:
        assert "misclassified" in texts(at) and len(at.get("imgs") + at.get("image")) >= 1
    if page == PAGE["home"]:
        assert completed_env.id in str(at.dataframe[0].value)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: Path(p).stem)
def test_pages_with_a_running_run(app_env, page):
    from cifar_app.core.settings import TrainSettings
    from cifar_app.store.runstore import RunStore

    run = RunStore(app_env / "runs", reference_root=None).create(TrainSettings(norm="layer", epochs=3))
    run.update_status(state="running", pid=os.getpid(), heartbeat=time.time())
    run.append_metrics(*[BatchStats(i, 1, i, 10, 2.3 - i / 10, 0.01 * i, time.time()) for i in range(1, 6)])
    at = run_page(page, {"run": run.id})
    if page == PAGE["train"]:  # followed in the browser (cifar_app/web/live_view.js), not by re-runs
        views = [json.loads(e.proto.json) for e in at.get("bidi_component")]
        progress = next(v for v in views if v["view"] == "progress")
        assert progress["snapshot"]["text"].startswith("running · epoch 1/3 · batch 5/10 · ")
        assert [(v["figure"], v["run"]) for v in views if v["view"] == "figure"] == [
            ("epochs", run.id), ("batches", run.id)]
        assert not at.get("progress") and not at.get("plotly_chart")
        assert any(b.label == "Stop" for b in at.button)


def png(color=(200, 30, 30), size=(48, 40)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, "PNG")
    return buf.getvalue()


def test_train_page_shows_params_and_refuses_bad_settings(app_env):
    at = run_page(PAGE["train"])
    assert any("Parameters" == m.label for m in at.metric)
    at.radio(key="recipe").set_value("seed-plain").run()  # widths 16, 24, 32
    at.selectbox(key="norm").set_value("group").run()
    at.select_slider(key="groups").set_value(16).run()  # 16 does not divide 24
    assert not at.exception
    assert any("groups" in e.value for e in at.error)
    assert at.button(key="start").disabled
    at.selectbox(key="norm").set_value("layer-chw-affine").run()  # the seed's LN: over the budget
    assert any("over the 50,000 budget" in e.value for e in at.error) and at.button(key="start").disabled
    at.selectbox(key="norm").set_value("instance").run()
    assert not at.error and not at.button(key="start").disabled


def test_train_page_offers_every_setting_of_the_schema(app_env):
    """A setting added to the schema is on the Train page (the device is the machine's choice), and
    a mixing window that ends before it starts is refused there."""
    at = run_page(PAGE["train"])
    keys = {w.key for kind in ("slider", "select_slider", "selectbox", "radio", "checkbox",
                               "number_input", "text_input") for w in at.get(kind)}
    names = {k.removeprefix("set_") for k in keys} | {"norm", "groups"}
    assert set(TrainSettings.names()) - {"device"} <= names
    at.slider(key="set_mix_from").set_value(12).run()
    at.slider(key="set_mix_to").set_value(5).run()
    assert any("mix_from" in e.value for e in at.error) and at.button(key="start").disabled


def test_train_page_refuses_a_hostile_or_missing_teacher_and_takes_a_finished_one(completed_env):
    at = run_page(PAGE["train"])
    at.text_input(key="set_teacher").set_value("é" * 600).run()
    at.number_input(key="set_distill").set_value(0.5).run()
    assert not at.exception
    assert any("teacher" in e.value and len(e.value) < 300 for e in at.error)
    assert at.button(key="start").disabled
    at.text_input(key="set_teacher").set_value("no-such-run").run()
    assert any("teacher no-such-run" in e.value for e in at.error) and at.button(key="start").disabled
    at.text_input(key="set_teacher").set_value(completed_env.id).run()
    assert not at.exception and not at.error and not at.button(key="start").disabled


def test_classify_page_good_and_bad_upload(completed_env, monkeypatch):
    monkeypatch.setenv("CIFAR_APP_UPLOAD_MB", "77")
    at = run_page(PAGE["classify"], {"run": completed_env.id})
    # Streamlit's uploader shows a refused file as "Request failed with status code 503": the caps
    # and what each refusal means are in its help
    assert all(t in at.file_uploader(key="cls_files").proto.help for t in ("77 MB", "413", "503"))
    at.file_uploader(key="cls_files").set_value([
        ("good.png", png(), "image/png"),
        ("broken.png", b"\x89PNG\r\n\x1a\n not really", "image/png"),
        ("also-good.jpg", png((10, 200, 10), (300, 120)), "image/jpeg"),
    ]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.error) == 1 and "broken.png" in at.error[0].value.replace("\\", "")  # markdown-escaped
    charts = [c for c in at.get("plotly_chart")]
    assert len(charts) == 2  # one top-5 chart per good image (one model chosen)


def test_fresh_install_shows_the_reference_runs_without_data(app_env, monkeypatch, tmp_path):
    monkeypatch.delenv("CIFAR_APP_REFERENCE_RUNS")
    monkeypatch.setenv("CIFAR_APP_DATA", str(tmp_path / "no-data-yet"))
    at = run_page(PAGE["compare"])
    [chart] = at.get("plotly_chart")  # the four panels in one figure
    assert len(json.loads(chart.proto.spec)["data"]) == 4 * len(at.multiselect(key="compare_runs").value)
    assert "ref-batch" in at.multiselect(key="compare_runs").value
    at = run_page(PAGE["classify"])
    at.file_uploader(key="cls_files").set_value(("cat.png", png(), "image/png")).run()
    assert not at.exception and len(at.get("plotly_chart")) >= 1
    at = run_page(PAGE["misclassified"])
    assert "needs the dataset" in texts(at)


# ------------------------------------------------------------------ damaged runs on every page


@pytest.mark.parametrize("page", PAGES, ids=lambda p: Path(p).stem)
def test_a_damaged_run_is_named_on_every_page_and_the_others_still_work(completed_env, page):
    import shutil

    bad = completed_env.path.with_name("20990101-000000-group-bad001")
    shutil.copytree(completed_env.path, bad)
    (bad / "metrics.jsonl").write_bytes(b"\xff\xfe garbage\n")
    (bad / "status.json").write_text("[1, 2]")
    at = run_page(page, {"run": bad.name})
    if page != PAGE["model"]:
        assert "damaged: " in texts(at), texts(at)
    at = run_page(page, {"run": completed_env.id})  # the good run is unaffected
    if page == PAGE["home"]:
        table = at.dataframe[0].value
        status = dict(zip(table["id"], table["status"]))
        assert status == {completed_env.id: "completed", bad.name: "damaged"}


def test_a_run_with_settings_that_are_a_list_shows_damaged_on_the_train_page(completed_env):
    (completed_env.path / "settings.json").write_text('["batch"]')
    at = run_page(PAGE["train"], {"run": completed_env.id})
    assert any("damaged: settings.json" in e.value.replace("\\", "") for e in at.error)


# ------------------------------------------------------------------ unwritable store


def test_start_with_an_unwritable_runs_folder_says_which_path_and_why(app_env, monkeypatch, tmp_path):
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    monkeypatch.setenv("CIFAR_APP_RUNS", str(not_a_folder))
    at = run_page(PAGE["train"])
    at.button(key="start").click().run()
    assert not at.exception
    assert any(str(not_a_folder) in e.value.replace("\\", "") and "not a folder" in e.value for e in at.error)
    assert not_a_folder.read_text() == ""


def test_the_server_holds_the_test_split_alone(completed_env):
    """The pages show and evaluate on the test split; the training split (150 MB of CIFAR-10)
    stays out of the server."""
    from cifar_app.web import ui

    ui._DATA.clear()
    at = run_page(PAGE["misclassified"], {"run": completed_env.id})  # evaluates the run's model
    assert at.get("image") and ui._DATA
    assert all(len(d.train_x) == 0 and len(d.test_x) == 20 for d in ui._DATA.values())


def test_starting_a_run_checks_the_dataset_without_loading_it(app_env, monkeypatch, tmp_path):
    """The training process loads the dataset; the server only looks that it is there (loading it
    imported torch and the images into the server: 500 MB, seconds of CPU)."""
    from cifar_app.web import ui

    monkeypatch.setattr(ui, "dataset", lambda: pytest.fail("the server loaded the dataset"))
    monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "a-file"))
    (tmp_path / "a-file").write_text("")  # so that the start fails after the check: no process
    at = run_page(PAGE["train"])
    at.button(key="start").click().run()
    assert not at.exception and any("not a folder" in e.value for e in at.error)
    monkeypatch.setenv("CIFAR_APP_DATA", str(tmp_path / "nothing-here"))
    at = run_page(PAGE["train"])
    at.button(key="start").click().run()
    assert not at.exception and "needs the dataset" in texts(at)


# ------------------------------------------------------------------ access token

ACTIONS = {"train": ["start"], "home": ["rename", "delete"]}
ODD_TOKENS = ["é", "🔑", "x" * 10_000, "a\x00b", "   ", "s3cret-token\x00", "s3cret-tokén"]


def test_on_loopback_actions_need_no_token(completed_env):
    at = run_page(PAGE["train"], {"run": completed_env.id})
    assert not at.button(key="start").disabled and not at.sidebar.text_input


@pytest.mark.parametrize("page", [p.name for p in app.PAGES])  # every page the navigation has
def test_exposed_without_the_token_a_page_shows_nothing_but_the_prompt(completed_env, pages, page):
    """The default for an exposed server (as Jupyter): no run, no table, no path, no chart."""
    pages.expose()
    at = pages.open(page, {"run": completed_env.id})
    assert "Private" in "\n".join(i.value for i in at.sidebar.info)
    shown = texts(at)
    assert "tiny GN" not in shown and str(completed_env.path.parent) not in shown
    assert not drawn(at)
    at.sidebar.text_input(key="_access_token_input").input("s3cret-token").run()
    assert not at.exception and drawn(at)


def drawn(at) -> list:
    """What a page drew in its main area besides text: charts, tables, inputs, buttons."""
    kinds = ("plotly_chart", "dataframe", "button", "download_button", "selectbox", "multiselect", "radio",
             "file_uploader", "select_slider", "toggle", "image", "metric")
    return [e for kind in kinds for e in at.main.get(kind)]


@pytest.mark.parametrize("page", list(ACTIONS))
def test_public_read_without_the_token_the_app_is_read_only(completed_env, pages, page):
    pages.expose(public_read=True)
    at = pages.open(page, {"run": completed_env.id})
    assert "Read-only" in "\n".join(i.value for i in at.sidebar.info)
    for key in ACTIONS[page]:
        assert at.button(key=key).disabled
    at.sidebar.text_input(key="_access_token_input").input("wrong").run()
    assert any("not the access token" in e.value for e in at.sidebar.error)
    assert all(at.button(key=k).disabled for k in ACTIONS[page])


def test_public_read_hands_out_no_file_no_upload_no_compute_and_no_path(completed_env, pages):
    pages.expose(public_read=True)
    home = pages.open("home", {"run": completed_env.id})
    assert not home.get("download_button")  # bundle, metrics, predictions, ONNX: disabled buttons
    assert all(home.button(key=k).disabled for k in ("dl_bundle", "dl_metrics", "dl_predictions", "dl_onnx"))
    assert home.get("file_uploader")[0].proto.disabled  # import
    assert str(completed_env.path.parent) not in texts(home) and "a folder on the server" in texts(home)
    classify = pages.open("classify")
    assert classify.get("file_uploader")[0].proto.disabled and classify.toggle(key="cls_cam").disabled
    assert "needs the access token" in texts(classify)
    mis = pages.open("misclassified", {"run": completed_env.id})
    assert mis.toggle(key="mis_explain_on").disabled
    inside = pages.open("inside", {"run": completed_env.id})
    assert all(b.disabled for b in inside.button if b.key and b.key.startswith("bd_"))
    # with the token, each of them is there
    home.sidebar.text_input(key="_access_token_input").input("s3cret-token").run()
    assert {d.proto.label for d in home.get("download_button")} == {
        "Bundle (.zip)", "Metrics (.csv)", "Predictions (.csv)", "Model (.onnx)"}
    assert not home.get("file_uploader")[0].proto.disabled and str(completed_env.path.parent) in texts(home)


def test_exposed_with_the_token_actions_work(completed_env, pages):
    pages.expose()
    at = run_page(PAGE["home"], {"run": completed_env.id})
    at.sidebar.text_input(key="_access_token_input").input("s3cret-token").run()
    assert not at.exception and not at.button(key="rename").disabled
    at.text_input(key="rename_to").input("renamed by token").run()
    at.button(key="rename").click().run()
    assert completed_env.label == "renamed by token"


@pytest.mark.parametrize("odd", ODD_TOKENS)
def test_any_text_as_a_token_is_just_a_wrong_token(completed_env, pages, odd):
    """?token=é put a TypeError with the server's paths on the page (issue 17)."""
    pages.expose()
    at = pages.open("train", {"run": completed_env.id, "token": odd})
    assert "not the access token" in "\n".join(e.value for e in at.sidebar.error)
    assert "token" not in at.query_params and not at.button
    at.sidebar.text_input(key="_access_token_input").input(odd[:512]).run()
    assert not at.exception and "not the access token" in "\n".join(e.value for e in at.sidebar.error)


def test_exposed_the_token_in_the_url_unlocks_and_leaves_the_url(completed_env, pages):
    pages.expose()
    at = run_page(PAGE["train"], {"run": completed_env.id, "token": "s3cret-token"})
    assert not at.button(key="start").disabled and "token" not in at.query_params


def test_exposed_without_a_configured_token_one_is_generated_and_printed(completed_env, monkeypatch,
                                                                        capsys, pages):
    from cifar_app.web import access

    pages.expose(token=None, public_read=True)
    monkeypatch.setattr(access, "_generated", None)
    at = run_page(PAGE["train"], {"run": completed_env.id})
    assert at.button(key="start").disabled
    token, generated = access.server_token()
    assert generated and token in capsys.readouterr().err
    at = run_page(PAGE["train"], {"run": completed_env.id, "token": token})
    assert not at.button(key="start").disabled


def test_a_forced_token_applies_on_loopback_too(completed_env, monkeypatch):
    monkeypatch.setenv("CIFAR_APP_REQUIRE_TOKEN", "1")
    monkeypatch.setenv("CIFAR_APP_TOKEN", "behind-a-proxy")
    monkeypatch.setenv("CIFAR_APP_PUBLIC_READ", "1")
    at = run_page(PAGE["train"], {"run": completed_env.id})
    assert at.button(key="start").disabled


@pytest.mark.parametrize("address,loopback", [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True),
                                              ("localhost", True), ("", False), ("0.0.0.0", False),
                                              ("::", False), ("192.168.1.5", False), ("myhost", False)])
def test_which_addresses_count_as_loopback(address, loopback):
    from cifar_app.web import access

    assert access.is_loopback(address) is loopback
    assert access.token_required(address, env={}) is (not loopback)


@pytest.mark.parametrize("odd", [*ODD_TOKENS, None, 7, b"s3cret-token"])
def test_token_comparison_takes_any_input_and_only_the_token_matches(odd):
    from cifar_app.web import access

    assert access.token_matches(odd, "s3cret-token") is False
    assert access.token_matches(" s3cret-token\n", "s3cret-token") is True
    assert access.token_matches("é", "é") is True  # a non-ASCII token of one's own works too
    assert access.token_matches("", "") is False


def test_the_policy_is_the_one_rule_for_every_action():
    from cifar_app.web.access import Action, Policy

    open_, private, public = Policy(False), Policy(True), Policy(True, public_read=True)
    for action in Action:
        assert open_.allows(action, granted=False) and private.allows(action, granted=True)
        assert not private.allows(action, granted=False)
        assert public.allows(action, granted=False) is (action == Action.VIEW)
    assert "Private" in private.describe(False) and "Read-only" in public.describe(False)


ODD_TEXT = ["é", "🧪" * 50, "x" * 10_000, "a\x00b", "../../etc/passwd", "<script>alert(1)</script>"]


@pytest.mark.parametrize("odd", ODD_TEXT)
def test_odd_url_parameters_and_names_are_just_unknown_or_kept_safely(completed_env, pages, odd):
    """Non-ASCII, oversized and path-like text in every URL parameter and name field."""
    for page, param in (("train", "run"), ("home", "run"), ("misclassified", "run"), ("inside", "run"),
                        ("experiments", "exp")):
        at = pages.open(page, {param: odd})  # no exception: an unknown id picks the default
    at = pages.open("home", {"run": completed_env.id})
    at.text_input(key="rename_to").input(odd[:80]).run()
    at.button(key="rename").click().run()
    assert not at.exception
    before, label = completed_env.label, completed_env.label
    if "\x00" in odd:  # a control character: refused, naming it, and the label kept
        assert "U+0000" in texts(at)
    else:
        assert label == (odd[:80].strip() or before) and len(label) <= 80
    train = pages.open("train")
    train.text_input(key="label").input(odd[:80]).run()
    assert not train.exception
    exps = pages.open("experiments")
    exps.radio(key="exp_kind").set_value("custom").run()
    exps.text_area(key="exp_grid").input(odd).run()
    assert not exps.exception and exps.error  # a grid it cannot read is an error line, not a crash


def test_model_page_shows_each_architectures_layer_table_and_receptive_field(app_env):
    at = run_page(PAGE["model"])
    at.radio(key="model_arch").set_value("separable").run()
    assert not at.exception
    table, budget = at.dataframe[0].value, at.dataframe[1].value
    rows = dict(zip(table["layer"], table["kind"]))
    assert rows["C2"].startswith("3x3 dw-sep conv") and rows["C1"].startswith("3x3 conv")
    assert "47,402" in str([m.value for m in at.metric])
    assert list(table["receptive field (px)"])[list(table["layer"]).index("C9")] == 44
    assert 47_402 in list(budget["network"])  # the budget table follows the architecture


def test_the_server_imports_pandas_before_any_session_runs_a_page():
    """Sessions run their scripts in parallel threads; plotly reads pandas from sys.modules, so a
    figure drawn while another session is still importing pandas failed with "partially
    initialized module 'pandas'" (seen in a CI run). The server import loads it first."""
    import subprocess
    import sys

    probe = "import sys, dashboard; print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "True", out.stderr[-2000:]


def test_a_measurement_on_a_read_only_store_is_one_error_line_not_an_exception(completed_env, pages):
    """The Inside page's Measure button starts a job that logs into the run's folder: on a read-only
    store that is refused with the folder named, on the page, not as a traceback."""
    from tests.test_faults import read_only

    with read_only(completed_env.path.parent):
        inside = pages.open("inside", {"run": completed_env.id})
        button = next(b for b in inside.button if b.key and b.key.startswith("bd_"))
        button.click().run()
        assert not inside.exception, [e.value for e in inside.exception]
        assert any("cannot write" in e.value and "Read-only file system" in e.value for e in inside.error)


@pytest.mark.parametrize("norm", ["group", "ws-group", "batch", "layer"])
def test_the_groups_widget_follows_the_registry(pages, tmp_path, norm):
    """Enabled for every norm the registry says uses groups (WS+GN too), disabled for the others."""
    from cifar_app.core import norms

    pages.use(tmp_path / "runs")
    at = pages.open("train")
    at.selectbox(key="norm").set_value(norm).run()
    groups = next(w for w in at.main if getattr(w, "key", None) == "groups")
    assert groups.disabled == (not norms.get(norm).uses_groups)


# ------------------------------------------------------------------ many runs


def _many_runs(root: Path, n: int) -> list[str]:
    """``n`` runs with one epoch each, norms in turn, every seventh in an experiment; newest first."""
    from cifar_app.core.records import EpochStats
    from cifar_app.store.runstore import RunStore

    store = RunStore(root, reference_root=None)
    for i in range(n):
        run = store.create(TrainSettings(norm=["batch", "group", "layer"][i % 3], epochs=2),
                           label=f"run {i:03d}", tags={"experiment": "exp-a"} if i % 7 == 0 else {})
        run.append_metrics(EpochStats(1, 1.0, 0.5, 1.0, i / n, 0.1, 1.0, 10.0))
        run.update_status(state="completed" if i % 2 else "stopped")
    return [s.id for s in store.summaries()]


LIGHT_PAGES = ("home", "compare", "experiments", "train", "inside")  # they list, plot and plan: no network


def test_the_pages_that_list_plot_and_plan_import_no_torch(tmp_path):
    """Importing torch takes 2 s of the server's CPU (it held the Experiments page's first visit
    by 1.7 s) and 500 MB of its memory. The pages that only list runs, plot their logs, plan
    experiments or validate settings must not import it, with a run of every normalization the lab
    can train, the shipped reference runs listed, and a dataset, which the Runs page counts
    without loading (it loaded it, torch and 190 MB, only to count it)."""
    import subprocess
    import sys

    from cifar_app.core.norms import NORMS
    from cifar_app.core.records import EpochStats
    from cifar_app.core.settings import fits_budget
    from cifar_app.store.runstore import RunStore
    from tests.conftest import write_image_tree

    store = RunStore(tmp_path / "runs", reference_root=None)
    for norm in filter(fits_budget, NORMS):
        run = store.create(TrainSettings(norm=norm, epochs=2), label=f"a {norm} run")
        run.append_metrics(EpochStats(1, 1.0, 0.5, 1.0, 0.3, 0.1, 1.0, 10.0))
        run.update_status(state="completed")
    probe = ("import sys\nfrom streamlit.testing.v1 import AppTest\n"
             "for page in sys.argv[1:]:\n"
             "    at = AppTest.from_file(page, default_timeout=120)\n    at.run()\n"
             "    assert not at.exception, (page, at.exception)\n"
             "    print('PROBE', page, 'torch' in sys.modules)\n"
             "    print('FOUND', [e.value for e in at.success if 'CIFAR-10 found' in e.value])\n")
    env = {k: v for k, v in os.environ.items() if k not in ("CIFAR_APP_REFERENCE_RUNS", "CIFAR_APP_DATA")}
    out = subprocess.run([sys.executable, "-c", probe, *(PAGE[p] for p in LIGHT_PAGES)], cwd=ROOT,
                         env={**env, "CIFAR_APP_RUNS": str(tmp_path / "runs"),
                              "CIFAR_APP_DATA": str(write_image_tree(tmp_path / "data", 2, 1))},
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    seen = [line.split()[1:] for line in out.stdout.splitlines() if line.startswith("PROBE ")]
    assert [page for page, _ in seen] == [PAGE[p] for p in LIGHT_PAGES], out.stdout
    assert "FOUND ['CIFAR-10 found: 20 training and 10 test images in image folders" in out.stdout  # Runs
    first = next((page for page, loaded in seen if loaded == "True"), None)
    assert first is None, f"{first} imported torch (every page after it then shows it too)"


def test_the_runs_page_filters_sorts_and_pages_many_runs(app_env):
    ids = _many_runs(app_env / "runs", 130)
    at = run_page(PAGE["home"])
    table = at.dataframe[0].value
    assert list(table["id"]) == ids[:50] and "130 of 130 runs match; showing 1–50" in texts(at)
    at.multiselect(key="runs_norms").select("layer").run()
    at.multiselect(key="runs_states").select("completed").run()
    at.text_input(key="runs_text").input("RUN 1").run()  # any case
    table = at.dataframe[0].value
    names = sorted(table["name"])
    expected = sorted(f"run {i:03d}" for i in range(130)
                      if i % 3 == 2 and i % 2 and f"{i:03d}".startswith("1"))
    assert names == expected and f"{len(expected)} of 130 runs match" in texts(at)
    at.text_input(key="runs_text").input("").run()
    at.selectbox(key="runs_sort").select("best test accuracy").run()
    best = list(at.dataframe[0].value["best test acc (%)"])
    assert best == sorted(best, reverse=True) and len(best) == 21  # the completed LN runs: one page
    at.multiselect(key="runs_norms").unselect("layer").run()
    at.multiselect(key="runs_states").unselect("completed").run()
    at.selectbox(key="runs_exp").select("exp-a").run()
    assert len(at.dataframe[0].value) == 19  # i % 7 == 0 for i < 130
    at.selectbox(key="runs_exp").select(None).run()
    at.selectbox(key="runs_sort").select("newest first").run()
    at.number_input(key="runs_page").set_value(3).run()
    assert list(at.dataframe[0].value["id"]) == ids[100:130] and "showing 101–130" in texts(at)
    at.text_input(key="runs_text").input("run 0").run()  # two pages now: page 3 becomes 2
    assert not at.exception and "100 of 130 runs match; showing 51–100" in texts(at)


def test_the_runs_page_makes_its_tools_only_when_they_are_opened(app_env, monkeypatch):
    """Rename/delete and export/import are made (a run's files opened, their widgets sent) only
    while their expander is open; a link naming a run opens both."""
    from cifar_app.store.runstore import RunStore

    ids = _many_runs(app_env / "runs", 3)
    opened: list[str] = []
    real = RunStore.get
    monkeypatch.setattr(RunStore, "get", lambda store, run_id: opened.append(run_id) or real(store, run_id))
    def keys(at) -> set:
        return {getattr(w, "key", None) for kind in ("text_input", "selectbox", "file_uploader", "button",
                                                     "download_button")
                for w in at.get(kind)}

    tools = {"manage_run", "rename_to", "rename", "delete", "export_run", "dl_bundle", "import_bundle"}
    at = run_page(PAGE["home"])
    assert not keys(at) & tools and opened == [] and len(at.expander) == 2
    at.session_state["runs_port"] = True  # the user opens "Export or import a run"
    at.run()
    assert at.selectbox(key="export_run").value == ids[0] and opened == [ids[0]]
    assert keys(at) & tools == {"export_run", "dl_bundle", "import_bundle"}
    linked = run_page(PAGE["home"], {"run": ids[2]})
    assert keys(linked) >= tools and linked.selectbox(key="manage_run").value == ids[2]
    assert linked.selectbox(key="export_run").value == ids[2]  # it was the newest run's export
    linked.selectbox(key="export_run").select(ids[0]).run()
    linked.selectbox(key="manage_run").select(ids[1]).run()  # the user's choice: not a link to follow
    assert linked.selectbox(key="export_run").value == ids[0]
    linked.session_state["runs_manage"] = False  # closed: its picker is no longer drawn
    linked.run()
    linked.selectbox(key="export_run").select(ids[1]).run()
    assert linked.selectbox(key="export_run").value == ids[1] and not linked.session_state["runs_manage"]
    at.query_params["run"] = ids[1]  # a link, in a tab that exported another run before
    at.run()
    assert at.selectbox(key="export_run").value == ids[1]


def test_the_runs_page_lists_10000_runs_without_reading_their_logs(app_env, monkeypatch):
    """The index at scale: the second load reads no run's files (the first builds the index)."""
    import shutil

    from cifar_app.store.run import Run

    (first,) = _many_runs(app_env / "runs", 1)
    for i in range(9999):
        shutil.copytree(app_env / "runs" / first, app_env / "runs" / f"20300101-000000-copy-{i:06d}",
                        copy_function=os.link)
    run_page(PAGE["home"])
    monkeypatch.setattr(Run, "raw_summary", lambda run: (_ for _ in ()).throw(AssertionError(run.id)))
    at = run_page(PAGE["home"])
    assert "10,000 of 10,000 runs match; showing 1–50" in texts(at) and len(at.dataframe[0].value) == 50


def test_compare_the_selected_runs_opens_compare_with_them(app_env):
    ids = _many_runs(app_env / "runs", 60)
    at = run_page(PAGE["compare"], {"runs": f"{ids[55]},{ids[3]},nope,{'é' * 300}"})
    assert at.multiselect(key="compare_runs").value == [ids[55], ids[3]]
    at.multiselect(key="compare_runs").set_value([ids[3]]).run()  # a link picks once: then the user does
    assert at.multiselect(key="compare_runs").value == [ids[3]]
    assert at.query_params["runs"] == ids[3]  # the address names what is shown (a reload shows it)


def test_a_link_is_followed_each_time_it_opens_the_page_and_never_undoes_the_users_choice(app_env):
    """A link (the Runs page's buttons) picks runs once. Opened again after leaving the page (which
    drops the picker's state), the same link showed the page's default runs instead; and when a
    linked run was deleted or a filter changed, the link was followed again over the user's own
    choice."""
    from cifar_app.store.runstore import RunStore

    ids = _many_runs(app_env / "runs", 8)
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    at.run()
    link = f"{ids[5]},{ids[6]},{ids[7]}"
    for _ in range(2):  # the same selection, Compare pressed twice, with the Runs page in between
        at.switch_page(str(app.page_path("compare")))
        at.query_params["runs"] = link
        at.run()
        assert not at.exception and at.multiselect(key="compare_runs").value == [ids[5], ids[6], ids[7]]
        at.switch_page(str(app.page_path("home")))
        at.query_params.clear()
        at.run()
    at = run_page(PAGE["compare"], {"runs": link})
    at.multiselect(key="compare_runs").set_value([ids[0]]).run()
    RunStore(app_env / "runs", reference_root=None).delete(ids[7])  # another session deletes one
    at.run()
    assert at.multiselect(key="compare_runs").value == [ids[0]]  # still the user's choice
    at = run_page(PAGE["compare"], {"runs": f"{ids[1]},gone,{ids[2]}"})
    assert "1 of the 3 runs in the link cannot be shown here" in texts(at)


def test_a_page_does_not_write_its_default_run_into_the_address(app_env):
    """Back took two presses off the Train and Misclassified pages: each wrote its default run into
    the address, a second step in the browser's history (Streamlit pushes one for each change)."""
    from cifar_app.store.runstore import RunStore

    ids = _many_runs(app_env / "runs", 3)
    at = run_page(PAGE["train"])
    assert at.selectbox(key="train_run").value == ids[0] and "run" not in at.query_params
    RunStore(app_env / "runs", reference_root=None).create(TrainSettings(epochs=2))  # a newer run
    at.run()
    assert "run" not in at.query_params  # nobody chose: the address stays as it was
    at.selectbox(key="train_run").select(ids[1]).run()
    assert at.query_params["run"] == ids[1]
    at.selectbox(key="train_run").select(ids[0]).run()  # back to the first: the address follows
    assert at.query_params["run"] == ids[0]
    del at.query_params["run"]  # Back, to before the choice: the default again, in one press
    at.run()
    default = _summaries(app_env)[0].id  # the first listed (ids made in one second sort by name)
    assert "run" not in at.query_params and at.selectbox(key="train_run").value == default


@pytest.mark.parametrize("page,param,picker", [("train", "run", "train_run"),
                                               ("compare", "runs", "compare_runs")])
def test_a_link_to_a_run_not_shown_yet_stays_in_the_address_until_the_user_chooses(
        app_env, page, param, picker):
    """A link to a run the page cannot show yet (still training, on another server's store) was
    replaced in the address by the run shown instead: reloaded once the run was there, it showed
    the other run."""
    ids = _many_runs(app_env / "runs", 3)
    at = run_page(PAGE[page], {param: "20300101-000000-not-yet"})
    assert "cannot be shown here" in texts(at) and at.query_params[param] == "20300101-000000-not-yet"
    at.run()
    assert at.query_params[param] == "20300101-000000-not-yet"
    widget = at.selectbox(key=picker) if param == "run" else at.multiselect(key=picker)
    widget.set_value(ids[2] if param == "run" else [ids[2]]).run()
    assert at.query_params[param] == ids[2]  # the user's choice is written


def test_a_link_to_the_runs_page_opens_its_tools_on_the_run_each_time(app_env):
    ids = _many_runs(app_env / "runs", 3)
    at = AppTest.from_file(str(ROOT / "dashboard.py"), default_timeout=60)
    at.run()
    for _ in range(2):  # the same link twice, with another page and the user's own choice between
        at.switch_page(str(app.page_path("home")))
        at.query_params["run"] = ids[1]
        at.run()
        assert at.selectbox(key="manage_run").value == ids[1] == at.selectbox(key="export_run").value
        at.selectbox(key="manage_run").select(ids[0]).run()
        at.switch_page(str(app.page_path("compare")))
        at.query_params.clear()
        at.run()


def test_renaming_or_deleting_starts_afresh_for_each_run_picked(app_env):
    """The rename box kept the first run's name when another run was picked (Rename then gave it
    that name), and the delete tick stayed on: a second click deleted another run unconfirmed."""
    ids = _many_runs(app_env / "runs", 2)
    at = run_page(PAGE["home"], {"run": ids[0]})  # a link opens the expander on that run
    assert at.text_input(key="rename_to").value == "run 001"
    at.checkbox(key="confirm_delete").check().run()
    at.selectbox(key="manage_run").select(ids[1]).run()
    assert at.text_input(key="rename_to").value == "run 000" and not at.checkbox(key="confirm_delete").value
    assert at.button(key="delete").disabled


def test_the_runs_page_opens_each_page_on_the_runs_selected_in_its_table(app_env, monkeypatch):
    """Inside, Classify and the disagreement tab could not reach a run past the newest
    ``MAX_OPTIONS``: they had no link. The Runs page's selection opens each of them (``?runs=``,
    ``?run=``), as it opened Compare."""
    import streamlit as st

    ids = _many_runs(app_env / "runs", 3)
    at = run_page(PAGE["home"])
    keys = ["compare_selected", "inside_selected", "mistakes_selected", "classify_selected"]
    assert [b.key for b in at.button if b.key in keys] == keys
    assert all(at.button(key=k).disabled for k in keys)
    opened = []
    monkeypatch.setattr(st, "switch_page", lambda page, query_params: opened.append((page, query_params)))
    at.session_state[f"runs_table_1_{hash(tuple(ids))}"] = {"selection": {"rows": [2, 0], "columns": [],
                                                                          "cells": []}}
    at.run()
    assert at.button(key="compare_selected").label == "Compare (2)"
    assert at.button(key="inside_selected").disabled
    at.button(key="compare_selected").click().run()
    assert opened == [(app.page_path("compare"), {"runs": f"{ids[2]},{ids[0]}"})]


def test_compare_offers_the_newest_runs_and_those_chosen_beyond_them(app_env, monkeypatch):
    from cifar_app.web import ui

    ids = _many_runs(app_env / "runs", 40)
    monkeypatch.setattr(ui, "MAX_OPTIONS", 25)
    at = run_page(PAGE["compare"], {"runs": f"{ids[-1]},{ids[0]}"})  # the oldest: beyond the 25
    listed = _summaries(app_env)
    offered = list(ui.run_labels([*listed[:25], listed[-1]]).values())
    assert at.multiselect(key="compare_runs").options == offered
    assert at.multiselect(key="compare_runs").value == [ids[-1], ids[0]]
    assert "offers the 25 newest of 40 runs" in texts(at)


def test_a_run_picker_offers_the_newest_runs_and_the_one_linked_beyond_them(app_env, monkeypatch):
    """The Train page's picker sent every run's name to the browser on every rerun (10,000 at
    10,000 runs); it offers the newest and the run the URL names, like Compare's list."""
    from cifar_app.web import ui

    ids = _many_runs(app_env / "runs", 40)
    monkeypatch.setattr(ui, "MAX_OPTIONS", 25)
    at = run_page(PAGE["train"], {"run": ids[-1]})  # the oldest: beyond the 25
    picker = at.selectbox(key="train_run")
    assert picker.value == ids[-1] and len(picker.options) == 26
    assert "offers the 25 newest of 40 runs" in texts(at)
    picker.select(ids[0]).run()
    assert at.query_params["run"] == ids[0] and at.selectbox(key="train_run").value == ids[0]
    assert len(at.selectbox(key="train_run").options) == 25


def test_past_the_newest_runs_a_picker_still_offers_the_reference_runs(app_env, monkeypatch):
    """Reference runs come last in a listing: past ``MAX_OPTIONS`` user runs they fell out of every
    picker, though the pages compare against them."""
    import dataclasses

    from cifar_app.web import ui

    _many_runs(app_env / "runs", 5)
    listed = _summaries(app_env)
    listed[-1] = dataclasses.replace(listed[-1], reference=True)
    monkeypatch.setattr(ui, "MAX_OPTIONS", 2)
    assert ui.offered_runs(listed, []) == [listed[0].id, listed[1].id, listed[-1].id]
    chosen = [listed[2].id]
    assert ui.offered_runs(listed, chosen) == [s.id for s in (listed[0], listed[1], listed[2], listed[-1])]


def _summaries(app_env):
    from cifar_app.store.runstore import RunStore

    return RunStore(app_env / "runs", reference_root=None).summaries()


def test_runs_with_the_same_name_can_each_be_chosen(app_env):
    """Streamlit's select boxes send back the option's text, which maps to the first option with it:
    picking the second of two runs named alike chose the first. Their texts now differ."""
    from cifar_app.core.records import EpochStats
    from cifar_app.store.runstore import RunStore

    store = RunStore(app_env / "runs", reference_root=None)
    for _ in range(3):
        run = store.create(TrainSettings(norm="group", epochs=2), label="twin")
        run.append_metrics(EpochStats(1, 1.0, 0.5, 1.0, 0.4, 0.1, 1.0, 10.0))
        run.update_status(state="completed")
    ids = [s.id for s in store.summaries()]
    at = run_page(PAGE["compare"], {"runs": ids[0]})
    at.multiselect(key="compare_runs").select(ids[2]).run()
    assert at.multiselect(key="compare_runs").value == [ids[0], ids[2]]
    at = run_page(PAGE["train"], {"run": ids[0]})
    at.selectbox(key="train_run").select(ids[1]).run()  # the middle one: neither first nor last
    assert at.selectbox(key="train_run").value == ids[1] and at.query_params["run"] == ids[1]
