"""Misclassified: the test images a run gets wrong, its confusion matrix and per-class accuracy;
and where several runs disagree."""

import streamlit as st

from cifar_app.lab.analysis import agreement_patterns, confusion_matrix, misclassified, per_class_accuracy
from cifar_app.store.run import RunDamaged
from cifar_app.web import access, ui
from cifar_app.web.access import Action
from cifar_app.web.charts import NORM_LABELS, confusion_heatmap, per_class_bars
from cifar_app.web.tables import DISAGREE_MOST, default_selection
from cifar_app.web.text import for_markdown as md

ui.page_setup()
st.title("Misclassified test images")
runs = ui.completed_runs()
if not runs:
    st.info("No trained model yet. Train one on the **Train** page.")
    st.stop()
data = ui.dataset()
by_id = {s.id: s for s in runs}
# the Runs page's "Where they disagree": its runs, and that tab open first
fresh = "dis_runs" not in st.session_state  # the page was left (a widget's state goes with it)
if ui.new_link("dis_runs", by_id, most=DISAGREE_MOST, why=", damaged, without a trained model"):
    st.session_state["_mis_many_first"] = True
elif fresh or "runs" not in st.query_params:
    st.session_state.pop("_mis_many_first", None)


def one_run() -> None:
    chosen = ui.pick_run(runs, key="mis_run")
    run = ui.store().get(chosen.id)
    if data is None:
        ui.data_missing_hint()
        return
    try:
        ev = ui.evaluation(run)
    except (RunDamaged, FileNotFoundError) as e:
        st.error(md(access.shown(e, ui.may(Action.PATHS))))
        return
    classes = data.classes
    st.caption(f"{len(ev.labels):,} test images · accuracy {100 * ev.accuracy:.2f}% · "
               f"{int((ev.preds != ev.labels).sum()):,} misclassified")
    left, right = st.columns([3, 2])
    event = left.plotly_chart(confusion_heatmap(confusion_matrix(ev.labels, ev.preds, len(classes)), classes),
                              key="mis_confusion", on_select="rerun", selection_mode="points",
                              width="stretch")
    right.plotly_chart(per_class_bars(per_class_accuracy(ev.labels, ev.preds, len(classes)), classes,
                                      chosen.norm), key="mis_per_class", width="stretch")
    points = (event or {}).get("selection", {}).get("points", []) if event else []
    clicked = (points[0]["y"], points[0]["x"]) if points else None
    if clicked and clicked != st.session_state.get("mis_clicked"):
        st.session_state["mis_clicked"] = clicked
        st.session_state["mis_true"], st.session_state["mis_pred"] = clicked
    options = ["any", *classes]
    c1, c2, c3 = st.columns(3)
    true_name = c1.selectbox("True class", options, key="mis_true")
    pred_name = c2.selectbox("Predicted class", options, key="mis_pred")
    order = c3.radio("Sort by confidence", ["most confident first", "least confident first"],
                     horizontal=True, key="mis_order")
    mistakes = misclassified(ev, None if true_name == "any" else classes.index(true_name),
                             None if pred_name == "any" else classes.index(pred_name),
                             most_confident_first=order.startswith("most"))
    if not mistakes:
        st.info("No misclassified images with these filters.")
        return
    ui.image_grid(data, [m.index for m in mistakes],
                  [f"#{m.index} true {classes[m.true]} → {classes[m.pred]} ({100 * m.confidence:.0f}%)"
                   for m in mistakes], key="mis", view=(run.id, true_name, pred_name, order))
    if st.toggle("Where does the model look? Explain one of these images (Grad-CAM, Integrated "
                 "Gradients)", key="mis_explain_on", disabled=not ui.may(Action.COMPUTE),
                 help=None if ui.may(Action.COMPUTE) else ui.READ_ONLY_HELP) and ui.may(Action.COMPUTE):
        by_index = {m.index: m for m in mistakes}
        pick = st.selectbox("Image", list(by_index)[:200], key="mis_explain",
                            format_func=lambda i: f"#{i} true {classes[by_index[i].true]} → "
                                                  f"{classes[by_index[i].pred]}")
        m = by_index[pick]
        image32 = data.test_x[pick].permute(1, 2, 0).numpy()
        ui.attribution_views(ui.loaded_model(run), image32,
                             {f"predicted {classes[m.pred]}": m.pred, f"true {classes[m.true]}": m.true},
                             key="mis_attr")


def disagreements() -> None:
    kept = ui.remembered_runs("dis_runs", by_id, lambda: default_selection(runs)[:DISAGREE_MOST])
    options = ui.offered_runs(runs, kept, "; to compare others, select them on the **Runs** page and "
                              "press **Where they disagree** under the table")
    chosen = st.multiselect(f"Runs (2 to {DISAGREE_MOST})", options, max_selections=DISAGREE_MOST,
                            key="dis_runs", format_func=ui.run_labels(by_id[i] for i in options).__getitem__)
    ui.keep_link("dis_runs", chosen)
    if data is None:
        ui.data_missing_hint()
        return
    if len(chosen) < 2:
        st.info("Choose at least two runs.")
        return
    try:
        evs = [ui.evaluation(ui.store().get(i)) for i in chosen]
    except (RunDamaged, FileNotFoundError) as e:
        st.error(md(access.shown(e, ui.may(Action.PATHS))))
        return
    n = min(len(ev.labels) for ev in evs)  # runs scored on fewer images: their common first n
    names = [NORM_LABELS.get(by_id[i].norm, by_id[i].norm) if [by_id[j].norm for j in chosen].count(
        by_id[i].norm) == 1 else by_id[i].label for i in chosen]
    patterns = agreement_patterns([ev.preds[:n] for ev in evs], evs[0].labels[:n])
    table = [{"pattern": p.describe(names), "images": len(p.indices),
              "share (%)": round(100 * len(p.indices) / n, 2)} for p in patterns]
    st.dataframe(table, hide_index=True, width="stretch", key="dis_table")
    pick = st.selectbox("Show the images of", range(len(patterns)), key="dis_pattern",
                        format_func=lambda k: f"{patterns[k].describe(names)} ({len(patterns[k].indices):,})")
    classes = data.classes
    idx = patterns[pick].indices
    ui.image_grid(data, idx.tolist(),
                  [f"#{i} {classes[evs[0].labels[i]]}: " + ", ".join(
                      f"{name} {classes[ev.preds[i]]}" for name, ev in zip(names, evs)) for i in idx],
                  key="dis", view=(tuple(chosen), pick))


ONE, MANY = "One run's mistakes", "Where runs disagree"
tab_one, tab_many = st.tabs([ONE, MANY], default=MANY if st.session_state.get("_mis_many_first") else ONE)
with tab_one:
    one_run()
with tab_many:
    disagreements()
