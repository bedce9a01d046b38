"""Inside: what each normalization does to the activations, layer by layer, over training."""

import streamlit as st

from cifar_app.core.architectures import CONV_BLOCKS
from cifar_app.lab.batchdep_record import BatchDependence, batchdep_row
from cifar_app.store.fileio import StoreError
from cifar_app.store.jobs import start_batchdep
from cifar_app.store.run import RunDamaged, RunNotFound
from cifar_app.store.states import ACTIVE
from cifar_app.web import ui
from cifar_app.web.access import Action
from cifar_app.web.charts import (
    batchdep_plot,
    bn_running_vs_batch,
    inside_bands,
    inside_norms,
    landscape_plot,
)
from cifar_app.web.live import run_snapshot
from cifar_app.web.tables import default_selection
from cifar_app.web.text import for_markdown as md

INSIDE_MOST = 8  # runs side by side: more panels in one row cannot be read

ui.page_setup()
st.title("Inside the network")
st.caption("A fixed probe batch (the first 256 test images, the same for every run) is measured at "
           "initialisation and after every epoch: activation percentiles before and after each "
           "block's normalization, gradient and weight norms, and BatchNorm's running statistics.")
store = ui.store()
summaries = store.summaries()
ui.damaged_notice(summaries)


with_probe = [s for s in summaries if s.has_probes and not s.damaged]  # as listed: no run is read
if not with_probe:
    st.info("No run has probe records yet. Runs trained from now on record them (the shipped "
            "reference runs do too once re-shipped); train one on the **Train** page.")
    st.stop()
by_id = {s.id: s for s in with_probe}


def _default() -> list[str]:
    """The latest readable run of each normalization (a damaged probe log is found only when read)."""
    left = list(with_probe)
    while True:
        picks = default_selection(left)
        damaged = set()
        for i in picks:
            try:
                store.get(i).inside()
            except (RunDamaged, RunNotFound):
                damaged.add(i)
        if not damaged:
            return picks
        left = [s for s in left if s.id not in damaged]


ui.new_link("inside_runs", by_id, most=INSIDE_MOST, why=", damaged, without probe records")  # "Look inside"
kept = ui.remembered_runs("inside_runs", by_id, lambda: _default()[:INSIDE_MOST])  # (Streamlit would trim it)
options = ui.offered_runs(with_probe, kept, " with probe records; to look inside others, select them "
                          "on the **Runs** page and press **Look inside** under the table")
chosen = st.multiselect(f"Runs (one panel each, {INSIDE_MOST} at most)", options, key="inside_runs",
                        max_selections=INSIDE_MOST,
                        format_func=ui.run_labels(by_id[i] for i in options).__getitem__)
ui.keep_link("inside_runs", chosen)
c1, c2 = st.columns([3, 2])
layer = c1.radio("Layer", CONV_BLOCKS, horizontal=True, key="inside_layer")
where = c2.radio("Activations", ["post", "pre"], horizontal=True, key="inside_where",
                 format_func={"post": "after the norm", "pre": "before the norm (after ReLU)"}.get)
if not chosen:
    st.info("Choose at least one run.")
    st.stop()


def draw(ids: list[str], layer: str, where: str) -> None:
    """The charts of the chosen runs. A chosen run that trains shows its live progress line, which
    re-runs this fragment when the run logs an epoch and its probe record (no polling re-runs)."""
    for i in ids:
        try:
            snapshot = run_snapshot(store.get(i), show_paths=ui.may(Action.PATHS))
        except RunNotFound:  # deleted meanwhile
            st.rerun(scope="app")
        if snapshot["state"] in ACTIVE:
            st.caption(md(by_id[i].label))
            ui.live_progress(i, snapshot)
    series = []
    for i in ids:
        try:
            series.append({"label": by_id[i].label, "norm": by_id[i].norm,
                           "records": store.get(i).inside()})
        except RunDamaged as e:
            st.error(md(e.short))
    st.plotly_chart(inside_bands(series, layer, where), key="inside_bands", width="stretch")
    left, right = st.columns(2)
    left.plotly_chart(inside_norms(series, "grad_norm", "gradient norm per layer (probe batch)"),
                      key="inside_grad", width="stretch")
    right.plotly_chart(inside_norms(series, "weight_norm", "weight norm per layer", log_y=False),
                       key="inside_weight", width="stretch")
    for k, s in enumerate(series):
        if s["records"] and "bn" in s["records"][-1]["layers"][layer]:  # BatchNorm-like: running stats
            st.plotly_chart(bn_running_vs_batch(s["records"][-1], layer), key=f"inside_bn_{k}",
                            width="stretch")


st.fragment(draw)(chosen, layer, where)

st.subheader("Loss landscape and internal covariate shift")
st.caption("Santurkar et al. (2018) measured, during training, how smooth the loss is along the gradient "
           "(the loss range, the gradient change, the effective β) and the internal covariate shift of "
           "each layer (how much its gradient changes once the layers before it have taken their "
           "step). Runs with the *landscape* setting above 0 record them at that many steps, on the "
           "step's own training batch, without changing training (the landscape preset does).")
probed = {}
for i in chosen:
    try:
        if records := store.get(i).landscape():
            probed[by_id[i].label] = (records, by_id[i].norm)
    except RunDamaged as e:
        st.error(md(e.short))
if probed:
    fig = landscape_plot({k: v[0] for k, v in probed.items()}, {k: v[1] for k, v in probed.items()})
    st.plotly_chart(fig, key="inside_landscape", width="stretch")
else:
    st.info("None of the chosen runs has landscape records: train one with *landscape* = 8, or run "
            "the landscape preset on the **Experiments** page.")


st.subheader("Batch dependence at inference")
st.caption("Test accuracy (a) in eval mode, (b) when every test batch is normalized with its own "
           "statistics, at batch sizes 1 to 1000, and (c) with BatchNorm's statistics recomputed over "
           "10,000 training images (PreciseBN). GroupNorm, LayerNorm and no norm work per image, so "
           "their answers cannot depend on the batch; BatchNorm's can.")
results, rows = [], []
for i in chosen:
    run = store.get(i)
    try:
        cached = run.load_result("batchdep")
    except RunDamaged as e:
        st.error(md(e.short))
        continue
    if cached is None:
        if run.reference:
            st.caption(f"{md(by_id[i].label)}: not measured (`python -m cifar_app batchdep {i}`).")
        elif ui.action_button(f"Measure {md(by_id[i].label)} (a minute or two, in the background)",
                              key=f"bd_{i}", action=Action.COMPUTE):
            if ui.dataset_info() is None:  # the job loads it; the server only looks
                ui.data_missing_hint()
            else:
                try:
                    start_batchdep(store, i, ui.data_dir())
                    st.toast("Measuring; this section fills in when it is done.")
                except StoreError as e:  # a read-only store: the job could not keep its log
                    st.error(str(e))
        continue
    result = BatchDependence.from_dict(cached)
    results.append({"label": by_id[i].label, "norm": by_id[i].norm, "result": result})
    rows.append(batchdep_row(by_id[i].label, result))
if results:
    st.plotly_chart(batchdep_plot(results), key="inside_batchdep", width="stretch")
    st.dataframe(rows, hide_index=True, width="stretch", key="inside_batchdep_table")
