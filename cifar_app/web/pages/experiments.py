"""Experiments: sweeps that test the seed's claims about BN, GN and LN (grids of ordinary runs)."""


import dataclasses

import streamlit as st

from cifar_app.core.norms import NORMS
from cifar_app.core.settings import RECIPES, SettingsError, fits_budget
from cifar_app.lab.backends import start_experiment
from cifar_app.lab.experiments import (
    BACKENDS,
    ExperimentNotFound,
    ExperimentStore,
    estimate_seconds,
    group_stats,
    measured_speeds,
    noise_verdict,
    plot_axis,
    points_table_rows,
)
from cifar_app.lab.presets import CONFIRM_ABOVE, PRESETS, RULES, expand, parse_cli_grid
from cifar_app.lab.ray_backend import INSTALL_HINT, ray_available
from cifar_app.store.fileio import StoreError
from cifar_app.store.results import load_shipped_results
from cifar_app.store.states import EXPERIMENT_RESUMABLE, TERMINAL, ExperimentState
from cifar_app.web import access, ui
from cifar_app.web.access import Action
from cifar_app.web.charts import NORM_LABELS, group_bars, sweep_plot
from cifar_app.web.live import experiment_snapshot
from cifar_app.web.progress import format_duration
from cifar_app.web.text import for_markdown as md

NEW = "new"
SHIPPED = "shipped:"  # an option naming a preset's results shipped with the app

ui.page_setup()
st.title("Experiments")
st.caption("An experiment is a grid of ordinary runs (they appear on every other page too), run one "
           "at a time through the training queue. Each preset tests one claim of the seed.")
store = ui.store()
exps = ExperimentStore(store)
listed = {e.id: e for e in exps.list()}
shipped_files = load_shipped_results()
shipped = {SHIPPED + name: res for name, res in shipped_files.results.items()}
for why in shipped_files.damaged.values():
    st.warning(f"Shipped results left out, damaged: {md(why)}")
wanted = st.query_params.get("exp")
if (wanted in listed or wanted in shipped) and st.session_state.get("exp_pick") != wanted:
    st.session_state["exp_pick"] = wanted


def option_label(i: str) -> str:
    if i == NEW:
        return "+ new experiment"
    if i in shipped:
        return f"{i.removeprefix(SHIPPED)}: the lab's results, shipped ({len(shipped[i].points)} points)"
    return f"{listed[i].name} ({exps.state(listed[i])}, {len(listed[i].points)} points)"


pick = st.selectbox("Experiment", [NEW, *listed, *shipped], key="exp_pick", format_func=option_label)


def new_experiment() -> None:
    if not ui.may(Action.CHANGE):  # planning computes on the server: only for who may start it
        st.info("Planning and starting an experiment needs the access token. The shipped results and "
                "the experiments in this store can be viewed from the list above.")
        return
    kind = st.radio("What to test", [*PRESETS, "custom"], horizontal=True, key="exp_kind")
    if kind in PRESETS:
        preset = PRESETS[kind]
        st.markdown(f"**Claim:** {preset.claim}")
        st.info(preset.note)
        fitting = [n for n in NORMS if fits_budget(n)]
        chosen = st.multiselect("Normalizations", fitting, default=preset.grid["norm"],
                                key=f"exp_norms_{kind}", format_func=NORM_LABELS.get,
                                help="the preset's, or any others of the lab's (the wider family too)")
        try:
            base, grid, rules = preset.spec(chosen)
        except SettingsError as e:
            st.error(str(e))
            return
    else:
        grid_text = st.text_area("Grid: one FIELD=V1,V2,... per line", "norm=batch,group\nseed=0,1",
                                 key="exp_grid")
        base_text = st.text_area("Settings for every point: one FIELD=VALUE per line",
                                 "epochs=2\ntrain_limit=5000\ntest_limit=2000", key="exp_base")
        rules = [r for r in RULES if st.checkbox(RULES[r], key=f"exp_rule_{r}")]
        try:
            base, grid = parse_cli_grid([g for g in grid_text.splitlines() if g.strip()],
                                        [b for b in base_text.splitlines() if b.strip()])
        except SettingsError as e:
            st.error(str(e))
            return
    recipe = st.radio("Recipe", list(RECIPES), horizontal=True, key="exp_recipe",
                      help="the settings every point starts from (the grid and the settings above "
                           "override it); " + "; ".join(f"{n}: {r.about}" for n, r in RECIPES.items()))
    base = {**RECIPES[recipe].values, **base}
    try:
        points = expand(base, grid, rules)
    except SettingsError as e:
        st.error(str(e))
        return
    eta = estimate_seconds(points, measured_speeds(store))
    st.markdown(f"**{len(points)} points**, estimated "
                f"{format_duration(eta) if eta else 'unknown (no run measured on this machine yet)'}"
                " on this machine (from the images/s of your earlier runs).")
    st.dataframe([{k: getattr(p, k) for k in ("norm", *[g for g in grid if g != "norm"], "max_lr",
                                                "epochs", "train_limit")} for p in points],
                 hide_index=True, key="exp_plan", height=min(400, 40 + 35 * len(points)))
    name = st.text_input("Name", value=kind if kind in PRESETS else "custom sweep", key="exp_name")
    backend = st.radio("Backend", list(BACKENDS), horizontal=True, key="exp_backend",
                       format_func=BACKENDS.get)
    address, cpus, gpus = None, 1, 0.0
    if backend == "ray":
        if not ray_available():
            st.warning(f"Ray is not installed here: {INSTALL_HINT}.")
        address = st.text_input("Ray cluster address (empty: $RAY_ADDRESS, else a local Ray)", "",
                                key="exp_ray_address") or None
        c1, c2 = st.columns(2)
        cpus = c1.number_input("CPUs per point", 1, 256, 1, key="exp_cpus",
                               help="each point's torch threads; Ray runs as many points as fit")
        gpus = c2.number_input("GPUs per point", 0.0, 64.0, 0.0, step=0.25, key="exp_gpus",
                               help="0: CPU only; 0.5: two points share a GPU; 1 or more: whole GPUs")
    confirm = len(points) <= CONFIRM_ABOVE or st.checkbox(f"Yes, run all {len(points)} points",
                                                          key="exp_big")
    blocked = not confirm or (backend == "ray" and not ray_available())
    if ui.action_button("Start experiment", key="exp_start", type="primary", disabled=blocked):
        if ui.dataset_info() is None:  # the job loads it; the server only looks
            ui.data_missing_hint()
            return
        try:
            exp = exps.create(name, base, grid, rules, preset=kind if kind in PRESETS else None,
                              backend=backend, confirm_large=True, ray_address=address,
                              cpus_per_point=int(cpus), gpus_per_point=float(gpus))
            start_experiment(exps, exp.id, ui.data_dir(), ray_address=address)
        except (SettingsError, StoreError) as e:
            st.error(str(e))
            return
        st.query_params["exp"] = exp.id
        st.rerun()


def show_experiment(exp_id: str, was_state: str) -> None:
    """Status, points and the result plot. While the sweep runs, a live watch in the browser re-runs
    this fragment when a point changes (its state or accuracy), and the page once the sweep's state
    changes (Stop / Resume follow it)."""
    try:
        exp = exps.get(exp_id)
    except ExperimentNotFound:  # deleted meanwhile
        st.rerun(scope="app")
    points = exps.point_statuses(exp)
    snapshot = experiment_snapshot(exps, exp, points)
    if not ui.may(Action.PATHS):  # errors as a visitor may see them, in the table and the plot
        points = [dataclasses.replace(p, error=access.shown(p.error, False)) for p in points]
    state, counts = snapshot["state"], snapshot["counts"]
    if state != was_state:
        st.rerun(scope="app")
    if state == ExperimentState.RUNNING:
        ui.live_watch_experiment(exp.id, snapshot["version"])
    if exp.error and state != ExperimentState.RUNNING:
        st.error(f"The sweep's driver stopped: {md(access.shown(exp.error, ui.may(Action.PATHS)))}")
    st.progress(sum(counts.get(k, 0) for k in TERMINAL) / len(points),
                text=f"**{state}** · " + " · ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    draw_results(exp, points)


def draw_results(exp: object, points: list) -> None:
    """The claim, the plot (bars with the seed-noise verdicts for the seeds preset) and the points
    table of a stored experiment or a shipped results file (both have a preset and a grid)."""
    if exp.preset in PRESETS:
        st.caption(f"Claim: {PRESETS[exp.preset].claim} {PRESETS[exp.preset].note}")
    x, log_x = plot_axis(exp)
    if exp.preset == "seeds":
        stats = group_stats(points)
        if stats:
            st.plotly_chart(group_bars(stats), key="exp_groups", width="stretch")
            for line in noise_verdict(stats):
                st.markdown(f"- {line}")
    else:
        st.plotly_chart(sweep_plot(points, x, log_x=log_x, title=f"test accuracy against {x}"),
                        key="exp_plot", width="stretch")
    st.dataframe(points_table_rows(points),
                 hide_index=True, width="stretch", key="exp_points",
                 column_config={"run": st.column_config.LinkColumn("run", display_text="curves")})


if pick == NEW:
    new_experiment()
elif pick in shipped:
    st.query_params["exp"] = pick
    res = shipped[pick]
    st.info(f"Measured by the lab and shipped with the app (experiment {res.experiment}; recipe "
            f"{', '.join(res.recipes())}): the Claims page judges from these until this store has "
            "its own. Start the preset under **+ new experiment** to measure it on this machine.")
    draw_results(res, res.point_statuses())
else:
    st.query_params["exp"] = pick
    exp = listed[pick]
    state = exps.state(exp)
    c1, c2, _ = st.columns([1, 1, 4])
    with c1:
        if state == ExperimentState.RUNNING and ui.action_button("Stop", key="exp_stop"):
            exps.request_stop(exp.id)
            st.toast("Stop requested: the running point stops, the others are cancelled.")
    with c2:
        if state in EXPERIMENT_RESUMABLE and ui.action_button("Resume", key="exp_resume"):
            try:
                start_experiment(exps, exp.id, ui.data_dir())
                st.rerun()
            except StoreError as e:
                st.error(str(e))
    st.fragment(show_experiment)(exp.id, state)
