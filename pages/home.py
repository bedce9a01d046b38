"""Runs: what the app is, the dataset status, and the table of runs."""

import streamlit as st

from cifar_app import ui
from cifar_app.jobs import download_status, start_download
from cifar_app.progress import format_duration

ui.ensure_navigation()
st.title("CIFAR-10 Normalization Lab")
st.markdown("Train the seed's 14-layer CNN (< 50,000 parameters) on CIFAR-10 with **batch, group, "
            "layer or no normalization**, watch it learn live, compare the runs, and probe the "
            "models with test images and your own.")

st.subheader("Dataset")
data = ui.dataset()
if data is not None:
    st.success(f"CIFAR-10 found: {len(data.train_x):,} training and {len(data.test_x):,} test "
               f"images — {data.source}.")
else:
    root = ui.data_dir()
    st.warning(f"CIFAR-10 is not in `{root.resolve()}`.")
    st.markdown("Either **download** it here (needs internet, ~170 MB), or put a copy there "
                "(torchvision's `cifar-10-batches-py/` or `train/<class>/` + `test/<class>/` image "
                "folders) or start the app with `CIFAR_APP_DATA=/path/to/cifar10`. The shipped "
                "reference runs work without it on the Compare, Classify and Model pages.")
    dl = download_status(root)
    if dl and dl["state"] == "running":
        st.info(f"Downloading… {dl['message']}")
        if st.button("Refresh"):
            st.rerun()
    else:
        if dl and dl["state"] == "failed":
            st.error(f"The download failed: {dl['message']}")
        if st.button("Download CIFAR-10", type="primary"):
            start_download(root)
            st.rerun()

st.subheader("Runs")
store = ui.store()
runs = store.list()
if not runs:
    st.info("No runs yet. Train a model on the **Train** page.")
else:
    rows = []
    for run in runs:
        s = run.summary()
        rows.append({
            "name": s["label"] + (" (reference)" if s["reference"] else ""),
            "norm": s["norm"], "status": s["status"], "epoch": f"{s['epoch']}/{s['epochs']}",
            "best test acc (%)": None if s["best_test_acc"] is None else round(100 * s["best_test_acc"], 2),
            "params": s["params"], "minutes": round(s["seconds"] / 60, 1),
            "open": f"train?run={s['id']}", "id": s["id"],
        })
    st.dataframe(rows, hide_index=True, width="stretch", key="runs_table", column_config={
        "open": st.column_config.LinkColumn("open", display_text="curves"),
        "params": st.column_config.NumberColumn(format="%d"),
        "best test acc (%)": st.column_config.NumberColumn(format="%.2f"),
    })
    st.caption(f"Runs are stored in `{store.root.resolve()}`; total training time "
               f"{format_duration(sum(r['minutes'] for r in rows) * 60)}.")

    mine = [r for r in runs if not r.reference]
    if mine:
        with st.expander("Rename or delete a run"):
            run = ui.pick_run(mine, key="manage_run")
            new_label = st.text_input("New name", value=run.label, max_chars=80, key="rename_to")
            col1, col2 = st.columns(2)
            if col1.button("Rename", key="rename"):
                try:
                    store.rename(run.id, new_label)
                    st.rerun()
                except ValueError as e:
                    st.error(str(e))
            confirm = col2.checkbox("I want to delete this run and its files", key="confirm_delete")
            if col2.button("Delete", disabled=not confirm, key="delete"):
                try:
                    store.delete(run.id)
                    st.query_params.clear()
                    st.rerun()
                except RuntimeError as e:
                    st.error(str(e))
