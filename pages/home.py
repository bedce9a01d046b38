"""Runs: what the app is, the dataset status, and the table of runs."""

import streamlit as st

from cifar_app import ui
from cifar_app.jobs import download_status, start_download
from cifar_app.progress import format_duration
from cifar_app.runstore import StoreError
from cifar_app.tables import runs_table_rows

ui.page_setup()
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
        if ui.action_button("Download CIFAR-10", key="download", type="primary"):
            try:
                start_download(root)
                st.rerun()
            except StoreError as e:
                st.error(str(e))

st.subheader("Runs")
store = ui.store()
summaries = store.summaries()
if not summaries:
    st.info("No runs yet. Train a model on the **Train** page.")
    st.stop()

rows = runs_table_rows(summaries)
st.dataframe(rows, hide_index=True, width="stretch", key="runs_table", column_config={
    "open": st.column_config.LinkColumn("open", display_text="curves"),
    "params": st.column_config.NumberColumn(format="%d"),
    "best test acc (%)": st.column_config.NumberColumn(format="%.2f"),
})
for s in summaries:
    if s.damaged:
        st.error(f"`{s.id}` — {s.error}. Nothing was changed; delete it below if you want.")
st.caption(f"Runs are stored in `{store.root.resolve()}`; total training time "
           f"{format_duration(sum(s.seconds for s in summaries))}.")

mine = [s for s in summaries if not s.reference]
if mine:
    with st.expander("Rename or delete a run"):
        chosen = ui.pick_run(mine, key="manage_run")
        new_label = st.text_input("New name", value=chosen.label, max_chars=80, key="rename_to")
        col1, col2 = st.columns(2)
        with col1:
            if ui.action_button("Rename", key="rename"):
                try:
                    store.rename(chosen.id, new_label)
                    st.rerun()
                except (ValueError, RuntimeError) as e:  # a bad name, StoreError, RunDamaged
                    st.error(str(e))
        confirm = col2.checkbox("I want to delete this run and its files", key="confirm_delete")
        with col2:
            if ui.action_button("Delete", key="delete", disabled=not confirm):
                try:
                    store.delete(chosen.id)
                    st.query_params.clear()
                    st.rerun()
                except (RuntimeError, StoreError) as e:
                    st.error(str(e))
