"""Compare: overlay the curves of several runs (default: the latest run of each normalization;
``?runs=ID,ID`` from the Runs page's selection)."""

import streamlit as st

from cifar_app.lab.experiments import ExperimentStore
from cifar_app.web import ui
from cifar_app.web.charts import compare_grid
from cifar_app.web.tables import comparison_rows, default_selection

ui.page_setup()
st.title("Compare runs")
store = ui.store()
summaries = store.summaries()
ui.damaged_notice(summaries)
runs = [s for s in summaries if not s.damaged and s.epoch > 0]
if not runs:
    st.info("No run has finished an epoch yet. Train a model on the **Train** page.")
    st.stop()

experiments = {e.id: e.name for e in ExperimentStore(store).list()}
if experiments:
    exp = st.selectbox("Experiment", [None, *experiments], key="compare_exp",
                       format_func=lambda i: "all runs" if i is None else experiments[i])
    if exp is not None:
        runs = [s for s in runs if s.tags.get("experiment") == exp]
by_id = {s.id: s for s in runs}
default = default_selection(runs) if not experiments or exp is None else list(by_id)
scope = exp if experiments else None
if ui.new_link("compare_runs", by_id, why=", damaged, without a finished epoch"
               + (", not in this experiment" if scope else "")):  # the Runs page's Compare
    st.session_state["compare_for"] = scope
elif ui.reset("compare_runs", default):  # Back, to before the link
    st.session_state["compare_for"] = scope
elif st.session_state.get("compare_for", "-") != scope or "compare_runs" not in st.session_state:
    st.session_state["compare_for"], st.session_state["compare_runs"] = scope, default  # its runs
else:  # keep the user's choice, minus runs that are gone
    st.session_state["compare_runs"] = [i for i in st.session_state["compare_runs"] if i in by_id]
options = ui.offered_runs(runs, st.session_state.get("compare_runs", []),
                          "; to compare others, select them on the **Runs** page (filter, then tick "
                          "them) and press **Compare** under the table")
chosen = st.multiselect("Runs", options, format_func=ui.run_labels(by_id[i] for i in options).__getitem__,
                        key="compare_runs")
ui.keep_link("compare_runs", chosen)
if not chosen:
    st.info("Choose at least one run.")
    st.stop()

epochs = {i: store.get(i).metrics().epochs for i in chosen}
series = [{"id": i, "label": by_id[i].label, "norm": by_id[i].norm, "epochs": epochs[i]} for i in chosen]
st.plotly_chart(compare_grid(series), key="cmp_curves", width="stretch")
st.dataframe(comparison_rows([(by_id[i], epochs[i]) for i in chosen]), hide_index=True, width="stretch",
             key="cmp_table")
st.caption("Gap = final train accuracy − final test accuracy (train accuracy is measured on "
           "augmented images while the weights change, so a small negative gap is normal). "
           "Train loss is the plain cross-entropy, comparable to the test loss; runs logged before "
           "it was recorded show their label-smoothed loss and say so in the legend.")
