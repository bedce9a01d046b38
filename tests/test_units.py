"""Small pure functions: progress and ETA, run tables, analysis helpers, chart smoothing, packaging."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import numpy as np
import pytest

from cifar_app.core.records import BatchStats, EpochStats, RecordError, parse_record
from cifar_app.core.series import decimate, smooth
from cifar_app.lab.analysis import Evaluation, confusion_matrix, misclassified, per_class_accuracy
from cifar_app.store.formats import Metrics
from cifar_app.store.run import RunSummary
from cifar_app.web import charts
from cifar_app.web.charts import batch_curves, compare_grid, training_curves
from cifar_app.web.progress import format_duration, training_progress
from cifar_app.web.tables import comparison_rows, default_selection, runs_table_rows

ROOT = Path(__file__).resolve().parent.parent


def ep(n: int, acc: float, seconds: float = 10.0, speed: float = 1000.0,
       ce: float | None = 0.9) -> EpochStats:
    return EpochStats(n, 1.0, 0.6, 1.1, acc, seconds, speed, 0.1, ce)


def summary(id_: str, norm: str, status: str = "completed", reference: bool = False,
            best: float | None = 0.5) -> RunSummary:
    return RunSummary(id_, id_, reference, norm, status, 2, 2, best, 2, best, 49_482, 20.0, 0.0,
                      "damaged: x" if status == "damaged" else None, status == "completed")


# ---------------------------------------------------------------- progress


def test_progress_mid_epoch_uses_batch_times_before_the_first_epoch_ends():
    batches = [BatchStats(i, 1, i, 10, 2.0, 0.1, t=100.0 + i) for i in range(1, 5)]  # 1 batch/s
    p = training_progress(Metrics(batches, []), epochs=2, batch_size=50, state="running")
    assert (p.epoch, p.batch, p.batches) == (1, 4, 10) and p.fraction == pytest.approx(4 / 20)
    assert p.images_per_s == pytest.approx(50.0) and p.eta_s == pytest.approx(16 * 50 / 50.0)


def test_progress_after_an_epoch_adds_the_test_pass_of_each_remaining_epoch():
    batches = [BatchStats(i, 1, i, 10, 2.0, 0.1) for i in range(1, 11)]
    m = Metrics(batches, [ep(1, 0.4, seconds=12.0, speed=50.0)])  # 10 s training + 2 s testing
    p = training_progress(m, epochs=3, batch_size=50, state="running")
    assert (p.epoch, p.batch) == (1, 10) and p.eta_s == pytest.approx(20 * 50 / 50 + 2 * 2.0)
    done = training_progress(m, epochs=3, batch_size=50, state="completed")
    assert done.fraction == 1.0 and done.eta_s is None


def test_progress_of_a_run_with_no_records_yet():
    p = training_progress(Metrics(), epochs=5, batch_size=128, state="queued")
    assert (p.epoch, p.batch, p.fraction, p.images_per_s, p.eta_s) == (1, 0, 0.0, None, None)


@pytest.mark.parametrize("seconds,text", [(None, "-"), (12.3, "12 s"), (754, "12 min 34 s"),
                                          (5400, "1 h 30 min"), (59.6, "1 min 00 s")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


# ---------------------------------------------------------------- tables


def test_the_runs_page_links_open_each_page_on_the_selected_runs_that_fit_it():
    from dataclasses import replace

    from cifar_app.web.tables import selection_links

    def links(selected, probed=()):
        return {k.key.removesuffix("_selected"): (k.label, k.page, k.query)
                for k in selection_links(selected, probed)}

    assert all(not q for _, _, q in links([]).values())
    fresh = replace(summary("f", "batch", "running"), epoch=0)  # no epoch, no model yet
    one, two, bad = summary("a", "batch"), summary("b", "group"), summary("d", "layer", "damaged")
    got = links([fresh, one, bad], probed={"a", "d"})
    assert got["compare"] == ("Compare (1)", "compare", {"runs": "a"})
    assert got["inside"] == ("Look inside (1)", "inside", {"runs": "a"})
    assert got["mistakes"] == ("Mistakes", "misclassified", {"run": "a"})
    assert got["classify"] == ("Classify with it", "classify", {"run": "a"})
    got = links([two, one])  # two models: where they disagree, in the selection's order
    assert got["mistakes"] == ("Where they disagree", "misclassified", {"runs": "b,a"})
    assert not got["classify"][2] and not got["inside"][2] and got["compare"][2] == {"runs": "b,a"}
    five = [summary(c, "batch") for c in "vwxyz"]  # more than the tab compares
    assert not links(five)["mistakes"][2] and links(five)["compare"][2] == {"runs": "v,w,x,y,z"}
    assert all(not q for _, _, q in links([fresh, bad], probed={"d"}).values())


def test_default_selection_takes_the_latest_completed_run_per_norm_and_never_a_damaged_one():
    runs = [summary("new-bn-damaged", "?", "damaged"), summary("new-gn-running", "group", "running"),
            summary("old-bn", "batch"), summary("ref-group", "group", reference=True),
            summary("ref-batch", "batch", reference=True), summary("only-ln-stopped", "layer", "stopped")]
    assert default_selection(runs) == ["old-bn", "ref-group", "only-ln-stopped"]


def test_comparison_rows_report_best_final_gap_and_speed():
    rows = comparison_rows([(summary("a", "batch"), [ep(1, 0.5), ep(2, 0.7), ep(3, 0.6)]),
                            (summary("empty", "group"), [])])
    [row] = rows
    assert row["best test acc (%)"] == 70.0 and row["epoch of best"] == 2
    assert row["final test acc (%)"] == 60.0 and row["gap (pts)"] == 0.0 and row["s / epoch"] == 10.0


def test_runs_table_rows_name_the_problem_of_a_damaged_run():
    rows = runs_table_rows([summary("ok", "batch"), summary("bad", "?", "damaged", best=None)])
    # empty cells are empty, never the word "None" in the page's table
    assert rows[0]["problem"] == "" and rows[0]["experiment"] == "" and rows[0]["best test acc (%)"] == 50.0
    assert rows[1]["status"] == "damaged" and rows[1]["problem"] == "damaged: x"
    assert rows[1]["best test acc (%)"] is None and rows[1]["open"] == "train?run=bad"


# ---------------------------------------------------------------- analysis


def test_confusion_matrix_per_class_accuracy_and_misclassified():
    labels = np.array([0, 0, 1, 1, 2])
    preds = np.array([0, 1, 1, 0, 2])
    cm = confusion_matrix(labels, preds, 3)
    assert cm.tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 1]]
    np.testing.assert_allclose(per_class_accuracy(labels, preds, 4)[:3], [0.5, 0.5, 1.0])
    assert np.isnan(per_class_accuracy(labels, preds, 4)[3])  # no image of class 3
    probs = np.eye(3)[preds] * 0.5 + 0.1
    probs[3, 0] = 0.9
    ev = Evaluation(probs.astype(np.float32), labels)
    wrong = misclassified(ev)
    assert [m.index for m in wrong] == [3, 1]  # most confident mistake first
    assert [m.index for m in misclassified(ev, true_class=0)] == [1]
    assert [m.index for m in misclassified(ev, most_confident_first=False)] == [1, 3]
    assert ev.accuracy == pytest.approx(0.6)


# ---------------------------------------------------------------- charts


def test_smoothing_is_bias_corrected_and_zero_weight_is_identity():
    values = [4.0, 2.0, 2.0, 2.0]
    np.testing.assert_allclose(smooth(values, 0.0), values)
    s = smooth(values, 0.9)
    assert s[0] == pytest.approx(4.0)  # no pull towards zero at the start
    assert 2.0 < s[-1] < 4.0 and list(s) == sorted(s, reverse=True)


def test_decimate_keeps_first_last_min_max_and_the_bound():
    rng = np.random.default_rng(0)
    x = np.arange(1, 62_501, dtype=float)
    y = rng.normal(2.0, 0.3, len(x))
    y[12_345], y[40_000] = -5.0, 9.0  # one low and one high outlier
    xs, ys = decimate(x, y, 2000)
    assert len(xs) <= 2000 and list(xs) == sorted(xs)
    assert (xs[0], xs[-1]) == (1, 62_500)
    assert ys.min() == -5.0 and ys.max() == 9.0 and 12_346 in xs and 40_001 in xs
    # every bucket keeps its own extremes: the decimated curve covers the same band in every stretch
    for lo, hi in ((0, 6_000), (30_000, 36_000), (56_000, 62_500)):
        part = (xs > lo) & (xs <= hi)
        assert ys[part].min() == pytest.approx(y[lo:hi].min())
        assert ys[part].max() == pytest.approx(y[lo:hi].max())


def test_decimate_leaves_short_series_whole_and_keeps_a_nan():
    xs, ys = decimate([1, 2, 3], [3.0, 1.0, 2.0], 2000)
    assert list(xs) == [1, 2, 3] and list(ys) == [3.0, 1.0, 2.0]
    y = np.ones(10_000)
    y[5_000] = np.nan  # a diverged step shows as a gap, not silently dropped
    assert np.isnan(decimate(np.arange(10_000), y, 400)[1]).sum() == 1
    with pytest.raises(ValueError):
        decimate([1, 2], [1.0], 100)


def test_batch_curves_stay_small_for_a_long_run():
    batches = [BatchStats(i, 1 + i // 3125, 1 + i % 3125, 3125, 2.3 / (1 + i / 1e4), 0.4 * i / 62_500)
               for i in range(1, 62_501)]
    fig = batch_curves(batches, "group", 0.9, max_points=2000)
    assert [t.name for t in fig.data] == ["loss per batch", "smoothed (0.90)", "learning rate"]
    assert all(len(t.x) <= 2000 for t in fig.data)
    assert fig.data[0].x[0] == 1 and fig.data[0].x[-1] == 62_500
    assert len(fig.to_json()) < 300_000


def test_training_curves_show_a_comparable_train_loss_and_integer_epoch_ticks():
    fig = training_curves([ep(1, 0.5, ce=0.8), ep(2, 0.6, ce=0.7)], "batch")
    names = [t.name for t in fig.data]
    assert names[0] == "train loss" and list(fig.data[0].y) == [0.8, 0.7]
    assert fig.layout.xaxis.dtick == 1
    old = training_curves([ep(1, 0.5, ce=None), ep(2, 0.6, ce=None)], "batch")
    assert "label smoothing" in old.data[0].name  # an old log says its train loss is not comparable
    cmp = compare_grid([{"label": "r", "norm": "group", "epochs": [ep(1, 0.5, ce=None)]}])
    assert "label-smoothed" in cmp.data[3].name and cmp.data[3].showlegend  # the train-loss panel's


def test_compare_draws_each_run_in_four_panels_with_one_legend_entry():
    runs = [{"label": "a", "norm": "batch", "epochs": [ep(1, 0.5, ce=0.8), ep(2, 0.6, ce=0.7)]},
            {"label": "a", "norm": "batch", "epochs": [ep(1, 0.4, ce=0.9)]},  # same label, same norm
            {"label": "<b>c</b>", "norm": "layer", "epochs": [ep(1, 0.3, ce=1.0)]}]
    fig = compare_grid(runs)
    assert [a.text for a in fig.layout.annotations] == [t for _, t in charts.COMPARE_PANELS]
    assert len(fig.data) == 12 and [t.xaxis for t in fig.data[:4]] == ["x", "x2", "x3", "x4"]
    assert [t.legendgroup for t in fig.data] == [str(k) for k in range(3) for _ in range(4)]  # not by label
    assert [t.showlegend for t in fig.data] == [True, False, False, False] * 3
    assert list(fig.data[0].y) == [50.0, 60.0] and list(fig.data[3].y) == [0.8, 0.7]  # % and plain CE
    assert fig.data[0].line.dash == "solid" and fig.data[4].line.dash == "dash"  # a second BN run
    assert fig.data[0].line.color == charts.NORM_COLORS["batch"] != fig.data[8].line.color
    assert fig.data[8].name == "&lt;b&gt;c&lt;/b&gt;"  # a label is text, escaped once
    assert fig.layout.xaxis.dtick == 1 and fig.layout.xaxis3.title.text == "epoch"
    assert {t.uid for t in fig.data} == {None}  # no ids given
    with_ids = compare_grid([{**r, "id": f"run-{k}"} for k, r in enumerate(runs)])
    assert [t.uid for t in with_ids.data[:5]] == [
        *(f"run-0/{m}" for m, _ in charts.COMPARE_PANELS), "run-1/test_acc"]


def test_every_figure_has_the_house_style_whatever_was_imported_after_charts():
    """Figures take the house template as Plotly's default at their creation (not validated again
    per figure); importing streamlit after ``charts`` sets the default to Streamlit's placeholder
    template, which must not reach them."""
    import subprocess
    import sys

    probe = """
import numpy as np, plotly.io as pio
from cifar_app.web import charts
import streamlit
from cifar_app.core.records import EpochStats
ep = EpochStats(1, 1.0, 0.5, 1.0, 0.5, 1.0, 10.0, 0.1, 1.0)
makers = [lambda: charts.training_curves([ep], "batch"),
          lambda: charts.compare_grid([{"label": "r", "norm": "group", "epochs": [ep]}]),
          lambda: charts.per_class_bars(np.ones(10) / 2, [str(i) for i in range(10)], "batch")]
white = pio.templates["plotly_white"].to_plotly_json()
got = []
for make in makers:
    pio.templates.default = "streamlit"  # as importing streamlit leaves it
    got.append(make().to_dict()["layout"]["template"] == white)
print(got)
"""
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[True, True, True]", out.stdout + out.stderr
    # and every figure of charts is made through the two helpers that set it
    import ast
    from pathlib import Path

    from cifar_app.web import charts

    tree = ast.parse(Path(charts.__file__).read_text())
    direct = [(f.name, node.lineno) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)
              and f.name not in ("_figure", "_subplots") for node in ast.walk(f)
              if isinstance(node, ast.Call) and ast.unparse(node.func) in ("go.Figure", "make_subplots")]
    assert direct == []


def test_figures_do_not_validate_the_house_template_again(monkeypatch):
    """Setting Plotly's default validates the whole template (16 ms): once, not at every figure."""
    import plotly.io as pio

    checks = []
    real = pio.templates._validate
    monkeypatch.setattr(pio.templates, "_validate", lambda value: checks.append(value) or real(value))
    monkeypatch.setattr(pio.templates, "_default", "streamlit")  # as importing streamlit leaves it
    for _ in range(3):
        compare_grid([{"label": "r", "norm": "group", "epochs": [ep(1, 0.5)]}])
        training_curves([ep(1, 0.5)], "batch")
    assert checks == ["plotly_white"]


def test_the_server_validates_the_house_template_before_any_visitor(monkeypatch, tmp_path):
    """A process's first figure validates the template and imports a line chart's validators
    (0.1 s): the server does it when it starts (``charts.warm``), not in its first visitor's page."""
    import plotly.io as pio

    from cifar_app.web import app

    checks = []
    real = pio.templates._validate
    monkeypatch.setattr(pio.templates, "_validate", lambda value: checks.append(value) or real(value))
    monkeypatch.setattr(pio.templates, "_default", "streamlit")  # as importing streamlit leaves it
    monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(app, "_list_once", lambda: None)  # no warm-up thread outliving the test
    app.server()
    assert "plotly_white" in checks  # (importing streamlit may validate its own template too)
    before = len(checks)
    compare_grid([{"label": "r", "norm": "group", "epochs": [ep(1, 0.5)]}])
    assert len(checks) == before  # the first visitor's figure validated nothing


def test_after_its_first_listing_the_server_s_full_collections_skip_what_it_holds(monkeypatch, tmp_path):
    """The server lists its store once when it starts, then freezes what it holds (its modules and
    that listing), so the garbage collector's full passes during page scripts walk only what came
    after (60-110 ms each at 10,000 runs before, 3-21 ms after)."""
    import gc

    from cifar_app.store.runstore import RunStore
    from cifar_app.web import app

    monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "runs"))
    frozen_while_listing = []
    real = RunStore.warm
    monkeypatch.setattr(RunStore, "warm", lambda self: frozen_while_listing.append(gc.get_freeze_count())
                        or real(self))
    gc.unfreeze()
    try:
        app._list_once()
        assert frozen_while_listing == [0]  # after the listing, so that it is frozen too
        assert gc.get_freeze_count() > 10_000  # the modules alone are more
    finally:
        gc.unfreeze()


# ---------------------------------------------------------------- records


@pytest.mark.parametrize("line", [[1], 3, "x", {"type": "epoch"}, {"type": "batch", "step": "a"},
                                  {"type": "nope"}, {"type": "epoch", "epoch": 0, "train_loss": 1}])
def test_a_record_that_is_not_what_the_app_writes_is_refused(line):
    with pytest.raises(RecordError):
        parse_record(line)


GOOD_BATCH = {"type": "batch", "step": 5, "epoch": 1, "batch": 5, "batches": 390, "loss": 2.3, "lr": 0.01,
              "t": 1.5}


@pytest.mark.parametrize("change", [
    {}, {"t": None}, {"t": 2}, {"t": True}, {"t": "1"}, {"loss": 2}, {"loss": True}, {"loss": float("nan")},
    {"lr": None}, {"step": 5.0}, {"step": 5.5}, {"step": True}, {"step": 0}, {"epoch": 0}, {"epoch": -1.0},
    {"batch": "5"}, {"batches": None}, {"extra": 1}, {"step": 2**70},
], ids=repr)
def test_a_batch_record_parses_as_the_field_by_field_check_says(change):
    """The fast path for lines as the app writes them gives what the full check gives, or
    refuses the same way."""
    d = {k: v for k, v in {**GOOD_BATCH, **change}.items() if not (v is None and k in ("lr", "batches"))}
    try:
        want = BatchStats._checked(d)
    except RecordError as e:
        with pytest.raises(RecordError, match=re.escape(str(e))):
            BatchStats.from_dict(d)
        return
    got = BatchStats.from_dict(d)
    assert repr(got) == repr(want)  # NaN too, and the same types (repr tells 2 from 2.0)
    assert [type(v) for v in vars(got).values()] == [type(v) for v in vars(want).values()]


def test_records_round_trip():
    for r in (ep(3, 0.5), BatchStats(1, 1, 1, 4, 2.0, 0.1, t=5.0), BatchStats(1, 1, 1, 4, 2.0, 0.1)):
        assert parse_record(r.to_record()) == r


# ---------------------------------------------------------------- packaging


def test_pyproject_declares_the_same_pins_as_requirements_and_a_console_script():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()
            if re.match(r"^[A-Za-z0-9_.-]+==", ln.strip())]
    assert sorted(project["dependencies"]) == sorted(pins)
    assert project["scripts"]["cifar-app"] == "cifar_app.cli:main"
    assert "-e ." in (ROOT / "requirements.txt").read_text().splitlines()


def test_no_sys_path_hacks_remain():
    for path in [*ROOT.glob("benchmarks/*.py"), *ROOT.glob("cifar_app/*.py")]:
        text = path.read_text()
        assert "sys.path.insert" not in text and "PYTHONPATH" not in text, path


def test_agreement_patterns_count_every_right_wrong_combination():
    from cifar_app.lab.analysis import agreement_patterns

    labels = np.array([0, 1, 2, 3, 4, 5])
    bn = np.array([0, 1, 2, 9, 9, 5])
    gn = np.array([0, 1, 9, 3, 9, 9])
    patterns = agreement_patterns([bn, gn], labels)
    by = {p.right: p.indices.tolist() for p in patterns}
    assert by == {(True, True): [0, 1], (True, False): [2, 5], (False, True): [3], (False, False): [4]}
    assert sum(len(p.indices) for p in patterns) == 6 and len(patterns[0].indices) == 2
    assert [p.describe(["BN", "GN"]) for p in patterns if p.right == (False, True)] == ["GN right; BN wrong"]
    assert [p.describe(["BN", "GN"]) for p in patterns if p.right == (True, False)] == ["BN right; GN wrong"]
    assert [p.describe(["BN", "GN"]) for p in patterns if p.right == (False, False)] == ["all wrong"]
    with pytest.raises(ValueError):
        agreement_patterns([bn], labels)


def test_a_huge_bad_value_is_not_echoed_back_whole():
    from cifar_app.core.settings import SettingsError, parse_setting

    for name, text in (("norm", "é" + "x" * 10_000), ("batch_size", "9" * 10_000 + "x")):
        with pytest.raises(SettingsError) as e:
            parse_setting(name, text)
        assert len(str(e.value)) < 400 and "…" in str(e.value)


def test_the_server_s_start_turns_nagle_off_for_the_connections_its_socket_accepts(monkeypatch, tmp_path):
    """Streamlit binds its listening socket with protocol 0, so asyncio leaves Nagle's algorithm on
    (``web.nodelay``). The app's lifespan, entered after the bind, turns it off on the listener;
    what it accepts inherits that. A socket bound as Streamlit binds it stands in for the server's."""
    import asyncio
    import os
    import socket

    from cifar_app.web import app

    monkeypatch.setenv("CIFAR_APP_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(app, "_list_once", lambda: None)  # no warm-up thread outliving the test
    with socket.socket(family=socket.AF_INET) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()

        async def start() -> None:
            async with app.server()["lifespan"](None):
                pass

        opened = len(os.listdir("/proc/self/fd"))
        asyncio.run(start())
        assert len(os.listdir("/proc/self/fd")) == opened  # it copied each socket's descriptor: closed
        with socket.create_connection(listener.getsockname()) as _client:
            accepted, _ = listener.accept()
            with accepted:
                assert accepted.proto == 0  # as Streamlit's: asyncio's own check would skip it
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_whole_number_past_any_float_is_refused_by_name_not_an_overflow():
    """JSON allows ``1`` and 400 zeros. ``float()`` of it raised ``OverflowError``: one such field
    in one run's metrics stopped every listing (``runs`` showed a traceback), and as a setting it
    stopped ``train``. Now it is a ``RecordError`` (the run is listed as damaged) and a
    ``SettingsError``."""
    from cifar_app.core.settings import SettingsError, TrainSettings

    huge = 10**400
    record = {**EpochStats(1, 1.0, 0.5, 1.0, 0.5, 1.0, 10.0, 0.1, 1.0).to_record(), "test_acc": huge}
    with pytest.raises(RecordError, match="'test_acc' is past any float"):
        parse_record(record)
    for field, value in (("epochs", huge), ("max_lr", huge), ("max_lr", -huge)):
        with pytest.raises(SettingsError, match=field):
            TrainSettings.from_dict({"norm": "batch", field: value})
