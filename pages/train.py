"""Train: choose a normalization and settings, start a run, follow it live."""

import streamlit as st

from cifar_app import ui
from cifar_app.charts import NORM_LABELS, batch_loss, lr_schedule, training_curves
from cifar_app.jobs import can_resume, start_run
from cifar_app.model import NORMS, PARAM_BUDGET
from cifar_app.progress import format_duration, training_progress
from cifar_app.runstore import ACTIVE_STATES
from cifar_app.settings import SettingsError, TrainSettings

ui.ensure_navigation()
st.title("Train")
store = ui.store()
form, live_col = st.columns([1, 2], gap="large")

with form:
    st.subheader("New run")
    norm = st.radio("Normalization", NORMS, format_func=NORM_LABELS.get, horizontal=True, key="norm")
    groups = st.select_slider("Groups (GroupNorm)", [1, 2, 4, 8, 16], value=4, key="groups",
                              disabled=norm != "group")
    epochs = st.slider("Epochs", 1, 50, 20, key="epochs")
    batch_size = st.select_slider("Batch size", [16, 32, 64, 128, 256, 512], value=128, key="batch")
    max_lr = st.number_input("Max learning rate (OneCycle)", 0.001, 2.0, 0.2, step=0.01,
                             format="%.3f", key="max_lr")
    dropout = st.slider("Dropout", 0.0, 0.5, 0.0, 0.05, key="dropout")
    augment = st.checkbox("Augmentation (random crop + flip)", value=True, key="augment")
    subset = st.selectbox("Quick demo: training images", [None, 10_000, 5_000, 1_000, 500],
                          format_func=lambda n: "all 50,000" if n is None else f"first {n:,}",
                          key="subset")
    test_subset = st.selectbox("Test images per epoch", [None, 2_000, 1_000],
                               format_func=lambda n: "all 10,000" if n is None else f"first {n:,}",
                               key="test_subset")
    label = st.text_input("Name (optional)", max_chars=80, key="label")
    settings = TrainSettings(norm=norm, groups=groups, epochs=epochs, batch_size=batch_size,
                             max_lr=float(max_lr), dropout=float(dropout), augment=augment,
                             train_limit=subset, test_limit=test_subset)
    try:
        settings.validate()
        params = settings.param_count()
        st.metric("Parameters", f"{params:,}", f"{PARAM_BUDGET - params:,} under the 50,000 budget",
                  delta_color="off")
        error = None
    except SettingsError as e:
        error = str(e)
        st.error(error)
    if st.button("Start training", type="primary", disabled=error is not None, key="start"):
        if ui.dataset() is None:
            ui.data_missing_hint()
        else:
            busy = [r for r in store.list() if r.status().get("state") in ACTIVE_STATES]
            run = store.create(settings, label=label or None)
            start_run(store, run.id, ui.data_dir())
            st.query_params["run"] = run.id
            if busy:
                st.session_state["queued_note"] = (
                    f"Another run is training on this machine, so **{run.id}** is queued: it starts "
                    "as soon as that one ends, instead of both running at half speed.")
            st.rerun()


def show_run(run_id: str) -> None:
    """Progress, controls and curves of one run; re-drawn every 2 s while it trains."""
    run = store.get(run_id)
    status, metrics, s = run.status(), run.metrics(), run.settings()
    state = status.get("state", "unknown")
    p = training_progress(metrics, s.epochs, s.batch_size, state)
    speed = f"{p.images_per_s:,.0f} images/s" if p.images_per_s else "measuring speed"
    st.progress(p.fraction, text=f"**{state}** · epoch {p.epoch}/{p.epochs} · batch "
                f"{p.batch}/{p.batches or '?'} · {speed} · {format_duration(p.eta_s)} left")
    if state == "queued":
        st.info("Queued: waiting for the run that is training now to finish.")
    if status.get("error") and state in ("failed", "interrupted"):
        st.error(f"{state}: {status['error']}")
    if state in ACTIVE_STATES and not run.reference:
        if st.button("Stop", key="stop"):
            run.request_stop()
            st.toast("Stop requested: the run stops after the current batch; its last epoch "
                     "checkpoint is kept.")
    elif can_resume(run) and st.button("Resume from the last checkpoint", key="resume"):
        start_run(store, run.id, ui.data_dir(), resume=True)
        st.rerun()
    if metrics.epochs:
        best = max(metrics.epochs, key=lambda r: r["test_acc"])
        c1, c2, c3 = st.columns(3)
        c1.metric("Test accuracy (last epoch)", f"{100 * metrics.epochs[-1]['test_acc']:.2f}%")
        c2.metric("Best", f"{100 * best['test_acc']:.2f}%", f"epoch {best['epoch']}", delta_color="off")
        c3.metric("Seconds per epoch", f"{metrics.epochs[-1]['seconds']:.1f}")
        st.plotly_chart(training_curves(metrics.epochs, s.norm, uirevision=run.id),
                        key="train_curves", width="stretch")
    if metrics.batches:
        smoothing = st.slider("Smoothing", 0.0, 0.99, 0.9, 0.01, key="smoothing")
        st.plotly_chart(batch_loss(metrics.batches, s.norm, smoothing, uirevision=run.id),
                        key="train_batch_loss", width="stretch")
        st.plotly_chart(lr_schedule(metrics.batches, uirevision=run.id), key="train_lr",
                        width="stretch")
    elif state in ACTIVE_STATES:
        st.caption("Waiting for the first batch (loading data and the model)…")


with live_col:
    st.subheader("Progress")
    if note := st.session_state.pop("queued_note", None):
        st.info(note)
    runs = store.list()
    if not runs:
        st.info("No runs yet: choose the settings on the left and press **Start training**.")
    else:
        run = ui.pick_run(runs, key="train_run")
        active = run.status().get("state") in ACTIVE_STATES
        st.fragment(show_run, run_every=2.0 if active else None)(run.id)
