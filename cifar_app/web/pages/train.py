"""Train: choose a normalization and settings, start a run, follow it live."""

import streamlit as st

from cifar_app.core import norms
from cifar_app.core.architectures import PARAM_BUDGET
from cifar_app.core.settings import RECIPES, SettingsError, TrainSettings
from cifar_app.store.fileio import StoreError
from cifar_app.store.jobs import can_resume, start_new_run, start_run
from cifar_app.store.recorder import TeacherUnavailable, teacher_records
from cifar_app.store.run import Run, RunDamaged, RunNotFound
from cifar_app.store.states import ACTIVE
from cifar_app.web import ui
from cifar_app.web.access import Action
from cifar_app.web.live import run_snapshot
from cifar_app.web.text import for_markdown as md

BASIC = ("epochs", "batch_size", "max_lr", "dropout", "augment", "train_limit", "test_limit")
ADVANCED = ("arch", "whiten", "dirac", "ema", "flip", "mix", "mix_alpha", "mix_from", "mix_to",
            "resize_start", "norm_lr", "teacher", "distill", "distill_temp", "weight_decay",
            "label_smoothing", "crop_pad", "cutout", "momentum", "pct_start", "seed", "landscape",
            "train_eval", "precision")
LABELS = {"epochs": "Epochs", "batch_size": "Batch size", "max_lr": "Max learning rate (OneCycle)",
          "augment": "Augmentation (random crop + flip)",
          "train_limit": "Quick demo: training images", "test_limit": "Test images per epoch"}

ui.page_setup()
st.title("Train")
store = ui.store()
form, live_col = st.columns([1, 2], gap="large")

with form:
    st.subheader("New run")
    recipe = st.radio("Recipe", list(RECIPES), horizontal=True, key="recipe",
                      help="; ".join(f"{name}: {r.about}" for name, r in RECIPES.items()))
    values = {"norm": ui.setting_widget("norm", "Normalization", key="norm")}
    values["groups"] = ui.setting_widget("groups", "Groups (GroupNorm)", key="groups",
                                         disabled=not norms.get(values["norm"]).uses_groups)
    values |= {name: ui.setting_widget(name, LABELS.get(name), recipe=recipe) for name in BASIC}
    with st.expander("More settings"):
        values |= {name: ui.setting_widget(name, recipe=recipe) for name in ADVANCED}
    label = st.text_input("Name (optional)", max_chars=80, key="label")
    error = None
    try:
        settings = TrainSettings(**values).validate()
        if settings.teacher:
            teacher_records(store, settings)  # each teacher run is there and has its model
        params = settings.param_count()
        st.caption(f"Changes from the default recipe: {settings.changes() or 'none'}")
        st.metric("Parameters", f"{params:,}", f"{PARAM_BUDGET - params:,} under the {PARAM_BUDGET:,} budget",
                  delta_color="off")
    except (SettingsError, TeacherUnavailable) as e:
        error = str(e)
        st.error(error)
    if ui.action_button("Start training", type="primary", disabled=error is not None, key="start"):
        if ui.dataset_info() is None:  # the job loads it; the server only looks
            ui.data_missing_hint()
        else:
            try:
                started = start_new_run(store, settings, label or None, ui.data_dir())
            except (StoreError, ValueError) as e:  # ValueError: a label with a control character
                st.error(f"Could not start: {md(e)}")
            else:
                st.query_params["run"] = started.run.id
                if started.behind:
                    st.session_state["queued_note"] = (
                        f"Another run is training on this machine, so **{started.run.id}** is queued: "
                        "it starts as soon as that one ends, instead of both running at half speed.")
                st.rerun()


def show_status(snapshot: dict) -> None:
    """Where a run that is not training stands (a training one gets ``ui.live_progress``)."""
    st.progress(snapshot["fraction"], text=snapshot["text"])
    if snapshot["note"]:
        st.caption(snapshot["note"])
    if snapshot["error"]:
        st.error(f"{snapshot['state']}: {md(snapshot['error'])}")


def show_summary(run_id: str, was_training: bool) -> None:
    """Progress, Stop / Resume and the last epoch's accuracy and speed of one run. A fragment: the
    live progress line re-runs it when the run logs an epoch, and when the run starts or stops
    training, the whole page re-runs (its figures are drawn live only while it trains)."""
    try:
        run = store.get(run_id)
    except RunNotFound:  # deleted meanwhile: the page picks another
        st.rerun(scope="app")
    snapshot = run_snapshot(run, show_paths=ui.may(Action.PATHS))
    training = snapshot["state"] in ACTIVE  # a damaged run is not
    if training != was_training:
        st.rerun(scope="app")
    if snapshot["damaged"]:
        st.error(f"{md(snapshot['damaged'])}. The run is left as it is; delete it on the **Runs** page "
                 "if you want.")
        return
    if training:
        ui.live_progress(run.id, snapshot)
        if not run.reference and ui.action_button("Stop", key="stop"):
            try:
                run.request_stop()
                st.toast("Stop requested: the run stops after the current batch; its last epoch "
                         "checkpoint is kept.")
            except StoreError as e:
                st.error(str(e))
    else:
        show_status(snapshot)
        if can_resume(run) and ui.action_button("Resume from the last checkpoint", key="resume"):
            try:
                start_run(store, run.id, ui.data_dir(), resume=True)
                st.rerun()
            except StoreError as e:
                st.error(f"Could not resume: {e}")
    metrics = run.metrics()
    if metrics.epochs:
        best, last = metrics.best, metrics.epochs[-1]
        c1, c2, c3 = st.columns(3)
        c1.metric("Test accuracy (last epoch)", f"{100 * last.test_acc:.2f}%")
        c2.metric("Best", f"{100 * best.test_acc:.2f}%", f"epoch {best.epoch}", delta_color="off")
        c3.metric("Seconds per epoch", f"{last.seconds:.1f}")


def show_figures(run: Run, training: bool) -> None:
    """The epoch curves and the per-batch loss / LR of one run; a training run's are drawn in the
    browser and follow it in place."""
    metrics = run.metrics()
    if training:
        ui.live_figure(run.id, "epochs")
    elif metrics.epochs:
        st.plotly_chart(ui.run_figure(run, "epochs"), key="train_curves", width="stretch")
    if metrics.batches or training:
        smoothing = st.slider("Smoothing", 0.0, 0.99, 0.9, 0.01, key="smoothing")
        if training:
            ui.live_figure(run.id, "batches", smoothing)
        else:
            st.plotly_chart(ui.run_figure(run, "batches", smoothing), key="train_batches", width="stretch")


with live_col:
    st.subheader("Progress")
    if note := st.session_state.pop("queued_note", None):
        st.info(note)
    summaries = store.summaries()
    if not summaries:
        st.info("No runs yet: choose the settings on the left and press **Start training**.")
    elif chosen := ui.pick_run(summaries, key="train_run"):
        run = store.get(chosen.id)
        training = run_snapshot(run)["state"] in ACTIVE
        st.fragment(show_summary)(run.id, training)
        try:
            show_figures(run, training)
        except RunDamaged:
            pass  # show_summary says so
