"""Misclassified: the test images a run gets wrong, its confusion matrix and per-class accuracy."""

import streamlit as st

from cifar_app import ui
from cifar_app.analysis import confusion_matrix, misclassified, per_class_accuracy
from cifar_app.charts import confusion_heatmap, per_class_bars
from cifar_app.runstore import RunDamaged

PAGE_SIZE = 40

ui.page_setup()
st.title("Misclassified test images")
runs = ui.completed_runs()
if not runs:
    st.info("No trained model yet. Train one on the **Train** page.")
    st.stop()
chosen = ui.pick_run(runs, key="mis_run")
run = ui.store().get(chosen.id)
data = ui.dataset()
if data is None:
    ui.data_missing_hint()
    st.stop()

try:
    ev = ui.evaluation(run)
except (RunDamaged, FileNotFoundError) as e:
    st.error(str(e))
    st.stop()
classes = data.classes
norm = chosen.norm
st.caption(f"{len(ev.labels):,} test images · accuracy {100 * ev.accuracy:.2f}% · "
           f"{int((ev.preds != ev.labels).sum()):,} misclassified")

left, right = st.columns([3, 2])
event = left.plotly_chart(confusion_heatmap(confusion_matrix(ev.labels, ev.preds, len(classes)), classes),
                          key="mis_confusion", on_select="rerun", selection_mode="points",
                          width="stretch")
right.plotly_chart(per_class_bars(per_class_accuracy(ev.labels, ev.preds, len(classes)), classes, norm),
                   key="mis_per_class", width="stretch")

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
    st.stop()

pages = (len(mistakes) + PAGE_SIZE - 1) // PAGE_SIZE
view = (run.id, true_name, pred_name, order)
if st.session_state.get("mis_view") != view or st.session_state.get("mis_page", 1) > pages:
    st.session_state["mis_view"], st.session_state["mis_page"] = view, 1
page = st.number_input(f"Page (of {pages}; {len(mistakes):,} images)", 1, pages, key="mis_page")
shown = mistakes[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
st.image([ui.upscale(data.test_x[m.index].permute(1, 2, 0).numpy(), 4) for m in shown],
         caption=[f"#{m.index} true {classes[m.true]} → {classes[m.pred]} ({100 * m.confidence:.0f}%)"
                  for m in shown], width=128)
