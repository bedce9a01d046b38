"""Train: choose a normalization and settings, start a run, follow it live."""

import streamlit as st

from cifar_app import ui
from cifar_app.charts import batch_curves, training_curves
from cifar_app.jobs import can_resume, start_new_run, start_run
from cifar_app.model import PARAM_BUDGET
from cifar_app.progress import format_duration, training_progress
from cifar_app.runstore import ACTIVE_STATES, RunDamaged, StoreError
from cifar_app.settings import SettingsError, TrainSettings

BASIC = ("epochs", "batch_size", "max_lr", "dropout", "augment", "train_limit", "test_limit")
ADVANCED = ("weight_decay", "label_smoothing", "crop_pad", "cutout", "momentum", "pct_start", "seed")
LABELS = {"epochs": "Epochs", "batch_size": "Batch size", "max_lr": "Max learning rate (OneCycle)",
          "augment": "Augmentation (random crop + flip)",
          "train_limit": "Quick demo: training images", "test_limit": "Test images per epoch"}

ui.page_setup()
ui.still_live_page()
st.title("Train")
store = ui.store()
form, live_col = st.columns([1, 2], gap="large")

with form:
    st.subheader("New run")
    values = {"norm": ui.setting_widget("norm", "Normalization", key="norm")}
    values["groups"] = ui.setting_widget("groups", "Groups (GroupNorm)", key="groups",
                                         disabled=values["norm"] != "group")
    values |= {name: ui.setting_widget(name, LABELS.get(name)) for name in BASIC}
    with st.expander("More settings"):
        values |= {name: ui.setting_widget(name) for name in ADVANCED}
    label = st.text_input("Name (optional)", max_chars=80, key="label")
    error = None
    try:
        settings = TrainSettings(**values).validate()
        params = settings.param_count()
        st.metric("Parameters", f"{params:,}", f"{PARAM_BUDGET - params:,} under the 50,000 budget",
                  delta_color="off")
    except SettingsError as e:
        error = str(e)
        st.error(error)
    if ui.action_button("Start training", type="primary", disabled=error is not None, key="start"):
        if ui.dataset() is None:
            ui.data_missing_hint()
        else:
            try:
                started = start_new_run(store, settings, label or None, ui.data_dir())
            except StoreError as e:
                st.error(f"Could not start: {e}")
            else:
                st.query_params["run"] = started.run.id
                if started.behind:
                    st.session_state["queued_note"] = (
                        f"Another run is training on this machine, so **{started.run.id}** is queued: "
                        "it starts as soon as that one ends, instead of both running at half speed.")
                st.rerun()


# How often the live views poll the run store (s), each in its own fragment: a tick costs the
# browser little when nothing changed, but a changed Plotly figure is re-mounted. The progress line
# keeps the lag from a logged batch to the screen near 1 s; the epoch figure changes once an epoch;
# the per-batch figure, the costliest to redraw, follows slowest. Measured in
# benchmarks/watch_overhead.py (README: "Watching a run").
PROGRESS_EVERY_S, DETAILS_EVERY_S, BATCH_CHART_EVERY_S, QUEUED_EVERY_S = 2.0, 5.0, 20.0, 5.0


def show_progress(run_id: str, polled_state: str | None) -> None:
    """The progress line of one run; re-drawn every 2 s while it trains (5 s while queued). When a
    polled run's state changes, the whole page reruns once, so polling follows it (faster once it
    runs, none once it ends)."""
    run = store.get(run_id)
    try:
        status, metrics, s = run.status(), run.metrics(), run.settings()
    except RunDamaged as e:
        st.error(f"{e.short}. The run is left as it is; delete it on the **Runs** page if you want.")
        return
    state = status.get("state", "unknown")
    if polled_state is not None and state != polled_state:
        st.rerun(scope="app")
    p = training_progress(metrics, s.epochs, s.batch_size, state)
    speed = f"{p.images_per_s:,.0f} images/s" if p.images_per_s else "measuring speed"
    st.progress(p.fraction, text=f"**{state}** · epoch {p.epoch}/{p.epochs} · batch "
                f"{p.batch}/{p.batches or '?'} · {speed} · {format_duration(p.eta_s)} left")
    if state == "queued":
        st.info("Queued: waiting for the run that is training now to finish.")
    if status.get("phase") and state in ACTIVE_STATES:
        st.caption(str(status["phase"]))
    elif not metrics.batches and state in ACTIVE_STATES:
        st.caption("Waiting for the first batch (loading data and the model)…")
    if status.get("error") and state in ("failed", "interrupted"):
        st.error(f"{state}: {status['error']}")


def show_details(run_id: str) -> None:
    """Stop / Resume, the epoch figures and the epoch curves of one run; re-drawn every 5 s while
    it trains."""
    run = store.get(run_id)
    try:
        state, metrics, s = run.state(), run.metrics(), run.settings()
    except RunDamaged:
        return  # show_progress says so
    if state in ACTIVE_STATES and not run.reference:
        if ui.action_button("Stop", key="stop"):
            try:
                run.request_stop()
                st.toast("Stop requested: the run stops after the current batch; its last epoch "
                         "checkpoint is kept.")
            except StoreError as e:
                st.error(str(e))
    elif can_resume(run) and ui.action_button("Resume from the last checkpoint", key="resume"):
        try:
            start_run(store, run.id, ui.data_dir(), resume=True)
            st.rerun()
        except StoreError as e:
            st.error(f"Could not resume: {e}")
    if metrics.epochs:
        best = metrics.best
        c1, c2, c3 = st.columns(3)
        c1.metric("Test accuracy (last epoch)", f"{100 * metrics.epochs[-1].test_acc:.2f}%")
        c2.metric("Best", f"{100 * best.test_acc:.2f}%", f"epoch {best.epoch}", delta_color="off")
        c3.metric("Seconds per epoch", f"{metrics.epochs[-1].seconds:.1f}")
        fig = ui.memo_figure("train_curves", (run.id, len(metrics.epochs), metrics.epochs[-1]),
                             lambda: training_curves(metrics.epochs, s.norm, uirevision=run.id))
        st.plotly_chart(fig, key="train_curves", width="stretch")


def show_batches(run_id: str) -> None:
    """Per-batch loss and learning rate of one run; re-drawn every 20 s while it trains."""
    run = store.get(run_id)
    try:
        metrics, s = run.metrics(), run.settings()
    except RunDamaged:
        return  # show_progress says so
    if metrics.batches:
        smoothing = st.slider("Smoothing", 0.0, 0.99, 0.9, 0.01, key="smoothing")
        last = metrics.batches[-1]
        fig = ui.memo_figure("train_batches", (run.id, len(metrics.batches), last.step, smoothing),
                             lambda: batch_curves(metrics.batches, s.norm, smoothing, uirevision=run.id))
        st.plotly_chart(fig, key="train_batches", width="stretch")


with live_col:
    st.subheader("Progress")
    if note := st.session_state.pop("queued_note", None):
        st.info(note)
    summaries = store.summaries()
    if not summaries:
        st.info("No runs yet: choose the settings on the left and press **Start training**.")
    else:
        chosen = ui.pick_run(summaries, key="train_run")
        every = {"running": PROGRESS_EVERY_S, "queued": QUEUED_EVERY_S}.get(chosen.status)
        st.fragment(show_progress, run_every=every)(chosen.id, chosen.status if every else None)
        st.fragment(show_details, run_every=DETAILS_EVERY_S if every else None)(chosen.id)
        st.fragment(show_batches, run_every=BATCH_CHART_EVERY_S if every else None)(chosen.id)
