"""Classify: drop images, see what each trained run thinks they are."""

import streamlit as st

from cifar_app.lab.batchdep import alone_and_in_batch
from cifar_app.store.inference import MAX_FILE_BYTES, ImageError, classify_each, decode_upload
from cifar_app.store.run import RunDamaged
from cifar_app.web import gate, ui
from cifar_app.web.access import Action
from cifar_app.web.charts import NORM_COLORS, topk_bars
from cifar_app.web.tables import default_selection
from cifar_app.web.text import for_markdown as md

ALL = "all normalizations side by side"
BATCH_MATES = 127

ui.page_setup()
st.title("Classify your images")
runs = ui.completed_runs()
if not runs:
    st.info("No trained model yet. Train one on the **Train** page.")
    st.stop()

by_id = {r.id: r for r in runs}
ui.new_link("cls_run", by_id, param="run", most=1, why=", damaged, without a trained model")  # Runs page
ui.reset("cls_run", ALL)
options = ui.offered_runs(runs, [st.session_state.get("cls_run")], "; to classify with another, select "
                          "it on the **Runs** page and press **Classify with it** under the table")
labels = ui.run_labels(by_id[i] for i in options)
choice = st.selectbox("Model", [ALL, *options], key="cls_run",
                      format_func=lambda i: i if i == ALL else labels[i])
models = [by_id[i] for i in default_selection(runs)] if choice == ALL else [by_id[choice]]
ui.write_link("cls_run", [] if choice == ALL else [choice], param="run")  # the model shown
allowed = ui.may(Action.COMPUTE)  # classifying runs the models on this server
show_batch = st.toggle("Also score each image alone and inside a batch of test images (batch "
                       "statistics: only BatchNorm's answer changes)", key="cls_batch", disabled=not allowed)
show_cam = st.toggle("Show where each model looks (Grad-CAM at C9, eval mode)", key="cls_cam",
                     disabled=not allowed)
files = st.file_uploader(
    f"Drop images here (PNG, JPEG, WebP, BMP, GIF; up to {MAX_FILE_BYTES // 2**20} MB each)",
    type=["png", "jpg", "jpeg", "webp", "bmp", "gif"], accept_multiple_files=True, key="cls_files",
    disabled=not allowed, help=gate.upload_help() if allowed else ui.READ_ONLY_HELP)
if not allowed:
    st.info("Classifying images runs the models on this server, so it needs the access token.")
    st.stop()
if not files:
    st.caption("Each image is centre-cropped to a square (or padded, if it is very wide or tall) "
               "and shrunk to 32×32 pixels, the size the network was trained on.")
    st.stop()

data = ui.dataset() if show_batch else None
batch_mates = data.test_x[:BATCH_MATES] if data is not None else None
loaded = {}
for m in models:
    try:
        loaded[m.id] = ui.loaded_model(ui.store().get(m.id))
    except RunDamaged as e:
        st.error(str(e))
models = [m for m in models if m.id in loaded]
if not models:
    st.stop()
for f in files:
    data = f.getvalue()
    st.divider()
    try:
        image32, shown = decode_upload(data)
    except ImageError as e:
        st.error(f"**{md(f.name)}**: {md(e)}")
        continue
    # the images on one row, then one chart per model on the next: nothing is squeezed or cut off
    # however many models are compared
    left, middle, _ = st.columns([2, 1, 3])
    left.image(shown, caption=md(f.name), width="stretch")
    middle.image(ui.upscale(image32, 4), caption="model input, 32×32", width=128)
    charts = st.columns(max(len(models), 2))
    for col, m in zip(charts, models):
        [pred] = classify_each([image32], loaded[m.id])
        col.plotly_chart(topk_bars(pred.top_k, NORM_COLORS.get(m.norm, "#444"), m.label),
                         key=f"cls_{f.file_id}_{m.id}", width="stretch")
        if show_cam:
            from cifar_app.lab.attribution import gradcam, overlay

            index = loaded[m.id].classes.index(pred.top_k[0][0])
            col.image(overlay(image32, gradcam(loaded[m.id], image32, index)),
                      caption=f"Grad-CAM (C9, an 8×8 map) for {pred.top_k[0][0]}", width=160)
        if batch_mates is not None:
            top = pred.top_k[0][0]
            index = loaded[m.id].classes.index(top)
            ways = alone_and_in_batch(loaded[m.id], image32, batch_mates)
            col.caption(f"P({top}) with the norm's own statistics — " + " · ".join(
                f"{way}: {100 * float(p[index]):.1f}%" for way, p in ways.items()))
