"""Experiments: grid expansion, the derived LR rule, validation, and tiny sweeps end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cifar_app.core.settings import SettingsError
from cifar_app.lab.experiments import Experiment, ExperimentStore, run_experiment
from cifar_app.lab.presets import PRESETS, expand, parse_cli_grid
from cifar_app.store.results import ExperimentResults, Point, PointResult
from cifar_app.store.runstore import RunStore
from tests.conftest import synthetic_data, wait_for, write_image_tree

ROOT = Path(__file__).resolve().parent.parent
TINY = {"epochs": 1, "batch_size": 50, "max_lr": 0.05, "device": "cpu"}


def test_grid_expands_in_order_with_the_first_field_slowest():
    points = expand({"epochs": 3}, {"norm": ["batch", "group"], "seed": [0, 1, 2]})
    assert [(p.norm, p.seed) for p in points] == [("batch", 0), ("batch", 1), ("batch", 2),
                                                  ("group", 0), ("group", 1), ("group", 2)]
    assert all(p.epochs == 3 for p in points)


def test_the_lr_rule_scales_max_lr_linearly_with_the_batch_size():
    points = expand({"max_lr": 0.2}, {"batch_size": [2, 32, 128, 256]}, ["lr_scales_with_batch"])
    assert [p.max_lr for p in points] == pytest.approx([0.2 * 2 / 128, 0.05, 0.2, 0.4])


@pytest.mark.parametrize("grid,field", [({"batch_size": [0, 4]}, "batch_size"),
                                        ({"colour": ["red"]}, "colour"),
                                        ({"max_lr": ["fast"]}, "max_lr"),
                                        ({"norm": []}, "norm")])
def test_an_invalid_grid_is_refused_naming_the_field(grid, field):
    with pytest.raises(SettingsError) as err:
        expand({}, grid)
    assert err.value.field == field


def test_cli_grid_text_is_parsed_and_validated():
    base, grid = parse_cli_grid(["batch-size=2,4", "norm=batch,layer"], ["epochs=2"])
    assert base == {"epochs": 2} and grid == {"batch_size": [2, 4], "norm": ["batch", "layer"]}
    for bad in (["batch_size=0"], ["max_lr=abc"], ["nope=1"]):
        with pytest.raises(SettingsError):
            parse_cli_grid(bad, [])


def test_every_preset_expands_to_valid_points():
    sizes = {name: len(expand(p.base, p.grid, p.rules)) for name, p in PRESETS.items()}
    assert sizes == {"batch-size": 27, "learning-rate": 112, "regularization": 12, "groups": 15,
                     "landscape": 12, "seed-layernorm": 6, "seeds": 12, "bf16-seeds": 9, "recipe-arch": 9}


def test_every_claim_preset_pins_its_arithmetic_and_has_three_seeds():
    for name in ("batch-size", "learning-rate", "regularization", "groups", "landscape", "seed-layernorm"):
        points = expand(PRESETS[name].base, PRESETS[name].grid, PRESETS[name].rules)
        assert {p.precision for p in points} == {"fp32"}, name
        assert len({p.seed for p in points}) >= 3, name
    assert {p.precision for p in expand(PRESETS["seeds"].base, PRESETS["seeds"].grid)} == {"bf16"}


def test_equal_steps_scale_the_images_with_the_batch_size():
    from cifar_app.core.engine import steps_per_epoch

    p = PRESETS["batch-size"]
    points = expand(p.base, p.grid, p.rules)
    steps = {(q.batch_size, q.epochs * steps_per_epoch(q.train_limit, q.batch_size)) for q in points}
    assert steps == {(2, 780), (8, 780), (32, 780)}
    assert {(q.batch_size, q.train_limit, q.max_lr) for q in points} == {
        (2, 781, 0.003125), (8, 3125, 0.0125), (32, 12500, 0.05)}
    with pytest.raises(SettingsError, match="train_limit"):
        expand({}, {"batch_size": [2, 8]}, ["images_scale_with_batch"])


def test_a_norm_without_groups_is_one_point_not_one_per_g():
    points = expand(PRESETS["groups"].base, PRESETS["groups"].grid)
    instance = [p for p in points if p.norm == "instance"]
    assert [p.seed for p in instance] == [0, 1, 2] and {p.groups for p in instance} == {4}
    assert sorted({p.groups for p in points if p.norm == "group"}) == [1, 2, 4, 8]
    exp = Experiment("exp-x", "g", {}, PRESETS["groups"].grid, points=[Point(p.to_dict()) for p in points])
    assert exp.points[-1].describe(exp.grid) == "seed=2 norm=instance"
    assert exp.points[0].describe(exp.grid) == "seed=0 norm=group groups=1"


def test_ray_resources_are_checked_and_stored(tmp_path):
    exps = ExperimentStore(RunStore(tmp_path / "runs", reference_root=None))
    exp = exps.create("g", {}, {"seed": [0]}, backend="ray", cpus_per_point=2, gpus_per_point=0.25)
    assert (exps.get(exp.id).cpus_per_point, exps.get(exp.id).gpus_per_point) == (2, 0.25)
    for cpus, gpus, backend in ((0, 0, "ray"), (1, 1.5, "ray"), (1, -1, "ray"), (True, 0, "ray"),
                                (1, 0.5, "local"), (2, 0, "local"), (1, float("nan"), "ray")):
        with pytest.raises(SettingsError):
            exps.create("g", {}, {"seed": [0]}, backend=backend, cpus_per_point=cpus, gpus_per_point=gpus)
    assert exps.create("g", {}, {"seed": [0]}, backend="ray", gpus_per_point=2).gpus_per_point == 2.0


def test_a_grid_over_200_points_needs_confirmation(tmp_path):
    exps = ExperimentStore(RunStore(tmp_path / "runs", reference_root=None))
    grid = {"seed": list(range(201))}
    with pytest.raises(SettingsError, match="confirm"):
        exps.create("big", {}, grid)
    assert not exps.list()
    assert len(exps.create("big", {}, grid, confirm_large=True).points) == 201


def test_a_four_point_sweep_runs_every_point_as_a_tagged_run(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    exps = ExperimentStore(store)
    exp = exps.create("tiny", TINY, {"norm": ["batch", "group"], "seed": [0, 1]})
    seen = []
    run_experiment(exps, exp.id, data=synthetic_data(200, 50), on_point=lambda i, n, s: seen.append(s))
    exp = exps.get(exp.id)
    assert seen == ["completed"] * 4 and exps.state(exp) == "completed"
    for i, status in enumerate(exps.point_statuses(exp)):
        run = store.get(status.run_id)
        s = run.summary()
        assert s.tags == {"experiment": exp.id, "point": i} and s.status == "completed"
        assert run.has_model() and run.load_predictions() is not None and len(run.metrics().epochs) == 1
    assert len(store.list()) == 4  # ordinary runs: every page and CLI verb sees them


def test_a_diverged_point_is_a_result_and_the_sweep_goes_on(tmp_path):
    exps = ExperimentStore(RunStore(tmp_path / "runs", reference_root=None))
    exp = exps.create("lr", {**TINY, "norm": "none", "epochs": 2}, {"max_lr": [5.0, 0.05]})
    run_experiment(exps, exp.id, data=synthetic_data(200, 50))
    states = [p.state for p in exps.point_statuses(exps.get(exp.id))]
    assert states == ["failed", "completed"]
    assert "diverged" in exps.point_statuses(exps.get(exp.id))[0].error
    failed, done = exps.results(exps.get(exp.id)).points  # the arithmetic a divergence happened in
    assert failed.env and failed.env["precision"] == done.env["precision"] and failed.env["torch"]
    assert done.epochs and failed.epochs is not None  # the epochs it finished before it diverged


def test_stop_cancels_the_rest_and_resume_runs_only_what_is_missing(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    exps = ExperimentStore(store)
    exp = exps.create("stop me", TINY, {"seed": [0, 1, 2]})

    def stop_after_first(i, n, state):
        if i == 0:
            exps.request_stop(exp.id)

    run_experiment(exps, exp.id, data=synthetic_data(200, 50), on_point=stop_after_first)
    exp = exps.get(exp.id)
    assert [p.state for p in exps.point_statuses(exp)] == ["completed", "pending", "pending"]
    assert exps.state(exp) == "stopped"
    first_run = exp.points[0].run_id
    run_experiment(exps, exp.id, data=synthetic_data(200, 50))
    exp = exps.get(exp.id)
    assert [p.state for p in exps.point_statuses(exp)] == ["completed"] * 3
    assert exp.points[0].run_id == first_run and len(store.list()) == 3  # the first was not rerun


def test_killing_the_sweep_keeps_finished_points_and_resume_finishes(tmp_path):
    data = write_image_tree(tmp_path / "data", per_class_train=10, per_class_test=2)
    runs = tmp_path / "runs"
    env = {**os.environ}
    proc = subprocess.Popen([sys.executable, "-m", "cifar_app", "sweep", "--grid", "seed=0,1,2,3",
                             "--set", "epochs=1", "--set", "batch_size=4", "--set", "device=cpu",
                             "--data", str(data), "--runs-dir", str(runs), "--json"],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    exps = ExperimentStore(RunStore(runs, reference_root=None))

    def second_pair_training() -> bool:  # both points of the first pair are done (pairs end together)
        listed = exps.list()
        return bool(listed) and exps.counts(listed[0]).get("completed", 0) >= 2 and \
            any(p.state == "running" for p in exps.point_statuses(listed[0]))

    wait_for(second_pair_training, 120, "the second pair of points to train")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [exp] = exps.list()
    # the paired workers get SIGKILL with their parent
    wait_for(lambda: not any(p.state == "running" for p in exps.point_statuses(exp)), 20,
             "the paired workers to die with their sweep")
    states = [p.state for p in exps.point_statuses(exp)]
    assert exps.state(exp) == "interrupted" and "completed" in states and "interrupted" in states
    done = {p.run_id for p in exps.point_statuses(exp) if p.state == "completed"}

    out = subprocess.run([sys.executable, "-m", "cifar_app", "sweep", "--resume", exp.id, "--data",
                          str(data), "--runs-dir", str(runs), "--json"], capture_output=True, text=True,
                         timeout=240, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["id"] == exp.id and [r["status"] for r in result["runs"]] == ["completed"] * 4
    assert done <= {r["id"] for r in result["runs"]}  # finished points were kept, not rerun
    assert len(RunStore(runs, reference_root=None).list()) == 4
    listed = json.loads(subprocess.run([sys.executable, "-m", "cifar_app", "sweeps", "--runs-dir",
                                        str(runs), "--json"], capture_output=True, text=True,
                                       cwd=ROOT).stdout)
    assert listed == [{"id": exp.id, "name": "custom sweep", "preset": None, "status": "completed",
                       "points": 4, "counts": {"completed": 4}}]


def test_cli_refuses_a_bad_grid_before_anything_starts(tmp_path):
    out = subprocess.run([sys.executable, "-m", "cifar_app", "sweep", "--grid", "batch_size=0,4",
                          "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 2 and "batch_size" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ the Experiments page


@pytest.fixture
def page_env(pages, tmp_path):
    pages.use(tmp_path / "runs", write_image_tree(tmp_path / "data", 2, 1))
    return ExperimentStore(RunStore(tmp_path / "runs", reference_root=None))


def test_the_page_plans_a_preset_and_refuses_a_bad_custom_grid(page_env, pages):
    at = pages.open("experiments")
    assert "27 points" in "\n".join(m.value for m in at.markdown)  # batch-size preset
    at.radio(key="exp_kind").set_value("custom").run()
    at.text_area(key="exp_grid").input("batch_size=0,4").run()
    assert any("batch_size" in e.value for e in at.error)


def test_the_page_shows_a_finished_experiment_with_its_plot_and_table(page_env, pages):
    exp = page_env.create("done", TINY, {"norm": ["batch", "layer"], "batch_size": [25, 50]},
                          preset=None)
    run_experiment(page_env, exp.id, data=synthetic_data(200, 50))
    at = pages.open("experiments", {"exp": exp.id})
    assert "completed" in at.get("progress")[0].proto.text
    [plot] = at.get("plotly_chart")
    traces = json.loads(plot.proto.spec)["data"]
    assert len(traces) == 2 and all(len(t["x"]) == 2 for t in traces)  # one line per norm
    assert len(at.dataframe[-1].value) == 4
    assert not at.get("bidi_component")  # finished: nothing to watch


def test_the_page_shows_the_shipped_results_of_a_preset_computed_from_the_file(page_env, pages):
    """A fresh store still has the lab's measured presets to look at: the seeds preset's bars and
    seed-noise verdicts come from the shipped file's points, and nothing offers Stop or Resume."""
    from cifar_app.lab.experiments import group_stats, noise_verdict
    from cifar_app.store.results import load_shipped_results

    res = load_shipped_results().results["seeds"]
    at = pages.open("experiments", {"exp": "shipped:seeds"})
    assert at.selectbox(key="exp_pick").value == "shipped:seeds"
    [bars] = at.get("plotly_chart")
    assert len(json.loads(bars.proto.spec)["data"][0]["x"]) == len(res.final_accuracies())
    lines = [m.value for m in at.markdown if m.value.startswith("- ")]
    assert lines == [f"- {v}" for v in noise_verdict(group_stats(res.point_statuses()))] and lines
    assert len(at.dataframe[-1].value) == len(res.points)
    assert "run" not in at.dataframe[-1].value.columns  # no links to runs this store lacks
    assert not [b for b in at.button if b.label in ("Stop", "Resume")]
    assert "shipped" in "\n".join(i.value for i in at.info)
    at = pages.open("experiments", {"exp": "shipped:" + "ü" * 3000})  # no such file: the planner
    assert at.selectbox(key="exp_pick").value == "new"


def test_shipped_points_read_as_the_page_takes_them():
    from cifar_app.core.settings import TrainSettings
    from cifar_app.store.results import ExperimentResults
    from cifar_app.store.states import RunState

    points = [{"id": None, "settings": TrainSettings(norm=n, seed=0).to_dict(), "status": st,
               "final_test_acc": 0.8, "best_test_acc": 0.8, "seconds": 1.0}
              for n, st in (("batch", "completed"), ("group", "no such state"))]
    res = ExperimentResults.from_dict({"experiment": "e", "preset": "seeds",
                                       "grid": {"norm": ["batch", "group"]}, "points": points})
    a, b = res.point_statuses()
    assert (a.label, a.state, a.run_id) == ("norm=batch", RunState.COMPLETED, None)
    assert b.state == RunState.DAMAGED


def test_the_page_follows_a_running_experiment_and_offers_stop(page_env, pages):
    exp = page_env.create("live", TINY, {"seed": [0, 1, 2]})
    run = page_env.runs.create(TINY_SETTINGS(), tags={"experiment": exp.id, "point": 0})
    run.update_status(state="running", pid=os.getpid(), heartbeat=time.time())
    exp.points[0].run_id = run.id
    exp.driver_pid = os.getpid()
    page_env.save(exp)
    at = pages.open("experiments", {"exp": exp.id})
    assert "running" in at.get("progress")[0].proto.text
    assert any(b.label == "Stop" for b in at.button)
    from cifar_app.web.live import experiment_snapshot  # followed by a watch in the browser, no polling

    [watch] = [json.loads(e.proto.json) for e in at.get("bidi_component")]
    assert watch["view"] == "watch" and watch["path"] == f"lab/experiments/{exp.id}/live"
    assert watch["version"] == experiment_snapshot(page_env, page_env.get(exp.id))["version"]
    states = list(at.dataframe[-1].value["state"])
    assert states == ["running", "pending", "pending"]
    at.button(key="exp_stop").click().run()
    assert page_env.stop_requested(exp.id) and run.stop_requested()


def TINY_SETTINGS():
    from cifar_app.core.settings import TrainSettings

    return TrainSettings(**TINY)


def test_compare_offers_an_experiment_selector_that_picks_its_runs(page_env, pages):
    exp = page_env.create("pair", TINY, {"norm": ["batch", "group"]})
    run_experiment(page_env, exp.id, data=synthetic_data(200, 50))
    other = page_env.runs.create(TINY_SETTINGS())
    from cifar_app.store.jobs import execute_run

    execute_run(page_env.runs, other.id, data=synthetic_data(200, 50))
    at = pages.open("compare")
    assert len(at.multiselect(key="compare_runs").value) == 2  # latest per norm
    at.selectbox(key="compare_exp").set_value(exp.id).run()
    assert not at.exception
    want = sorted(p.run_id for p in exp_points(page_env, exp))
    assert sorted(at.multiselect(key="compare_runs").value) == want


def exp_points(exps, exp):
    return exps.get(exp.id).points


def test_small_batch_points_train_two_at_a_time_and_the_next_starts_when_one_ends(tmp_path, monkeypatch):
    """Up to PARALLEL_MAX_BATCH, 1-thread points train two at once (faster than one 2-thread point on
    2 cores), and a short point's successor does not wait for the long point beside it."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")  # a worker left to torch's default would take two
    data = write_image_tree(tmp_path / "data", per_class_train=20, per_class_test=2)
    store = RunStore(tmp_path / "runs", reference_root=None)
    exps = ExperimentStore(store)
    exp = exps.create("pairs", {"batch_size": 4, "device": "cpu", "arch": "plain"},  # the cheap net
                      {"epochs": [20, 1, 2]})
    run_experiment(exps, exp.id, data_dir=data)
    points = exps.point_statuses(exps.get(exp.id))
    assert [p.state for p in points] == ["completed"] * 3
    long, short, next_ = (store.get(p.run_id).raw_status() for p in points)
    assert long["started"] < short["finished"] and short["started"] < long["finished"]  # overlapped
    assert short["finished"] <= next_["started"] < long["finished"]  # in the short one's place
    assert [s["threads"] for s in (long, short, next_)] == [1, 1, 1]
    log = (store.get(points[0].run_id).log_path).read_text()
    assert "Traceback" not in log


EXP_RACE = """
import os, sys
from cifar_app.lab.experiments import ExperimentStore
from cifar_app.store.runstore import RunStore
role, root, exp_id, done = sys.argv[1:5]
exps = ExperimentStore(RunStore(root, reference_root=None))
open(done + "." + role, "w").close()  # ready
while not os.path.exists(done + ".go"):
    pass
if role == "driver":  # records each point's run as the sweep creates it
    for i in range(40):
        def change(exp, i=i):
            exp.points[i].run_id = f"run-{i}"
        exps.update(exp_id, change)
    open(done, "w").close()
else:  # a page pressing Resume (which marks the sweep started) over and over, until the driver is done
    while not os.path.exists(done):
        exps.mark_started(exp_id, 12345)
"""


def test_the_experiment_record_has_no_lost_update(tmp_path):
    """Two writers of one experiment.json (the driver recording point runs, a page marking it
    started): every point's run id survives."""
    exps = ExperimentStore(RunStore(tmp_path / "runs", reference_root=None))
    exp = exps.create("race", TINY, {"seed": list(range(40))})
    args = [str(exps.runs.root), exp.id, str(tmp_path / "done")]
    procs = [subprocess.Popen([sys.executable, "-c", EXP_RACE, role, *args]) for role in ("page", "driver")]
    wait_for(lambda: all((tmp_path / f"done.{role}").exists() for role in ("page", "driver")), 60,
             "both writers to be ready")
    (tmp_path / "done.go").touch()
    for p in procs:
        assert p.wait(timeout=120) == 0
    assert [p.run_id for p in exps.get(exp.id).points] == [f"run-{i}" for i in range(40)]


def test_the_page_says_why_the_sweep_driver_gave_up(page_env, pages):
    exp = page_env.create("cluster", TINY, {"norm": ["batch"]}, backend="ray", ray_address="10.0.0.9:6390")
    page_env.mark_finished(exp.id, error="no Ray head answers at 10.0.0.9:6390 (Connection refused): "
                                         "start one there with `ray start --head --port 6390`")
    at = pages.open("experiments", {"exp": exp.id})
    assert any("no Ray head answers at 10.0.0.9:6390" in e.value.replace("\\", "") for e in at.error)


def test_a_preset_takes_other_normalizations_on_the_page_and_the_cli(page_env, pages):
    from cifar_app.lab.presets import PRESETS

    grid = PRESETS["learning-rate"].grid_with(["instance", "batch-renorm"])
    assert grid["norm"] == ["instance", "batch-renorm"]
    assert grid["max_lr"] == PRESETS["learning-rate"].grid["max_lr"]
    at = pages.open("experiments")
    assert "27 points" in "\n".join(m.value for m in at.markdown)  # batch-size: 3 seeds x 3 norms x 3 sizes
    at.multiselect(key="exp_norms_batch-size").set_value(["batch", "ws-group", "instance", "layer"]).run()
    assert not at.exception and "36 points" in "\n".join(m.value for m in at.markdown)
    assert "layer-chw-affine" not in at.multiselect(key="exp_norms_batch-size").options  # over budget
    at.multiselect(key="exp_norms_batch-size").set_value([]).run()
    assert any("at least one normalization" in e.value for e in at.error)
    out = subprocess.run([sys.executable, "-m", "cifar_app", "sweep", "--grid", "seed=0", "--norms", "batch"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 2 and "--norms goes with --preset" in out.stderr


def test_the_groups_plot_draws_a_norm_without_groups_as_a_level_not_at_some_g():
    from cifar_app.store.results import PointStatus
    from cifar_app.web.charts import sweep_plot

    pts = [PointStatus(i, "", {"norm": "group", "groups": g}, None, "completed", 0.5, 0.5 + g / 100,
                       1.0, None) for i, g in enumerate((1, 2, 4, 8))]
    pts.append(PointStatus(4, "", {"norm": "instance", "groups": 4}, None, "completed", 0.4, 0.4, 1.0, None))
    fig = sweep_plot(pts, "groups")
    assert [list(t.x) for t in fig.data] == [[1, 2, 4, 8]]  # IN is not a point at G = 4
    assert fig.layout.shapes[0].y0 == pytest.approx(40.0) and "40.00%" in fig.layout.annotations[0].text


def _results(name: str, settings: list[dict], state: str = "completed") -> ExperimentResults:
    return ExperimentResults(name, "seeds", {}, [PointResult(s, state, 0.8, 0.8, 1.0) for s in settings])


def test_merging_results_refuses_a_point_completed_in_two_experiments():
    seeds = [s.to_dict() for s in expand({"precision": "bf16"}, PRESETS["seeds"].grid)]
    norms, none = [s for s in seeds if s["norm"] != "none"], [s for s in seeds if s["norm"] == "none"]
    merged = ExperimentResults.merge([_results("a", none), _results("b", norms)], preset="seeds")
    assert merged.experiment == "a+b" and len(merged.completed()) == 12
    # a point stopped in one experiment and completed in the other is one result, not two
    again = ExperimentResults.merge([_results("a", none, "stopped"), _results("b", none)])
    assert len(again.completed()) == 3
    with pytest.raises(ValueError, match="none seed 0"):
        ExperimentResults.merge([_results("a", none), _results("b", none[:1])])


def test_a_point_with_other_settings_than_the_presets_is_foreign():
    preset = PRESETS["seeds"]
    seeds = [s.to_dict() for s in expand({"precision": "bf16"}, preset.grid)]
    assert preset.foreign_points(_results("a", seeds)) == []  # the preset pins bf16 itself
    assert len(preset.foreign_points(_results("a", seeds), {"precision": "fp32"})) == 12  # --set counts
    other = {**seeds[0], "label_smoothing": 0.2}
    assert preset.foreign_points(_results("a", [*seeds[1:], other]), {"precision": "bf16"}) == [other]
