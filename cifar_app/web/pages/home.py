"""Runs: what the app is, the dataset status, and the table of runs."""

import streamlit as st

from cifar_app.core.architectures import PARAM_BUDGET
from cifar_app.store.export import (
    BundleError,
    bundle_bytes,
    import_bundle,
    metrics_csv,
    predictions_csv,
)
from cifar_app.store.fileio import StoreError
from cifar_app.store.jobs import download_status, start_download
from cifar_app.store.states import DownloadState
from cifar_app.web import access, gate, ui
from cifar_app.web.access import Action
from cifar_app.web.app import page_path
from cifar_app.web.progress import format_duration
from cifar_app.web.tables import runs_table_rows, selection_links
from cifar_app.web.text import for_markdown as md

ui.page_setup()
st.title("CIFAR-10 Normalization Lab")
st.markdown(f"Train the seed's 14-layer CNN (< {PARAM_BUDGET:,} parameters) on CIFAR-10 with **batch, group, "
            "layer or no normalization**, watch it learn live, compare the runs, and probe the "
            "models with test images and your own.")

st.subheader("Dataset")
data = ui.dataset_info()  # counted, not loaded: this page needs no torch
if data is not None:
    where = f" in {data.kind} `{data.path}`" if ui.may(Action.PATHS) else ""
    counts = "" if data.train is None else f": {data.train:,} training and {data.test:,} test images"
    st.success(f"CIFAR-10 found{counts}{where}.")
else:
    root = ui.data_dir()
    st.warning(f"CIFAR-10 is not in the data folder `{ui.server_path(root)}`.")
    st.markdown("Either **download** it here (needs internet, ~170 MB), or put a copy there "
                "(torchvision's `cifar-10-batches-py/` or `train/<class>/` + `test/<class>/` image "
                "folders) or start the app with `CIFAR_APP_DATA=/path/to/cifar10`. The shipped "
                "reference runs work without it on the Compare, Classify and Model pages.")
    dl = download_status(root)
    if dl and dl["state"] == DownloadState.RUNNING:
        st.info(f"Downloading… {md(access.shown(dl['message'], ui.may(Action.PATHS)))}")
        if st.button("Refresh"):
            st.rerun()
    else:
        if dl and dl["state"] == DownloadState.FAILED:
            st.error(f"The download failed: {md(access.shown(dl['message'], ui.may(Action.PATHS)))}")
        if ui.action_button("Download CIFAR-10", key="download", type="primary"):
            try:
                start_download(root)
                st.rerun()
            except StoreError as e:
                st.error(str(e))

st.subheader("Runs")
store = ui.store()
summaries = store.summaries()
if store.index_notice:
    st.info(md(access.shown(store.index_notice, ui.may(Action.PATHS))))
shown_runs: list = []
if not summaries:
    st.info("No runs yet. Train a model on the **Train** page, or import a bundle below.")
else:
    view = ui.run_filters(summaries, key="runs")
    shown_runs = view.runs
    picked = st.dataframe(runs_table_rows(shown_runs, show_paths=ui.may(Action.PATHS)), hide_index=True,
                          width="stretch", on_select="rerun", selection_mode="multi-row",
                          key=f"runs_table_{view.page}_{hash(tuple(s.id for s in shown_runs))}",
                          column_config={"open": st.column_config.LinkColumn("open", display_text="curves"),
                                         "params": st.column_config.NumberColumn(format="%d"),
                                         "best test acc (%)": st.column_config.NumberColumn(format="%.2f")})
    selected = [shown_runs[i] for i in picked.selection.rows if i < len(shown_runs)]
    probed = {s.id for s in selected if s.has_probes and not s.damaged}
    for column, link in zip(st.columns(4), selection_links(selected, probed)):
        if column.button(link.label, key=link.key, disabled=not link.query, width="stretch",
                         help=None if link.query else link.why):
            st.switch_page(page_path(link.page), query_params=link.query)
    ui.damaged_notice(shown_runs, here="Runs")
    st.caption(f"Runs are stored in `{ui.server_path(store.root)}`; {len(summaries):,} runs, total "
               f"training time {format_duration(sum(s.seconds for s in summaries))}.")

mine = [s for s in shown_runs if not s.reference]
wanted = next(iter(ui.link_ids("run")), None)  # as pick_run reads it
linked = next((s for s in summaries if s.id == wanted and not s.reference), None) if wanted else None
if linked is not None and linked not in mine:  # a link to this page names a run on another page
    mine.insert(0, linked)
# A link opens both tools on its run, once: the pickers live in expanders that may be closed (a
# widget not drawn loses its state), so the link is remembered apart, until the page is left.
if "runs_port" not in st.session_state:  # the page opened afresh: its expanders have no state yet
    st.session_state.pop("runs_link", None)
if ui.new_link("runs_link", {s.id for s in mine}, param="run", most=1):
    st.session_state["runs_manage"] = st.session_state["runs_port"] = True
    st.session_state["manage_run"] = st.session_state["export_run"] = st.session_state["runs_link"]
tools = ui.lazy_expander("Rename or delete a run (of those shown)", key="runs_manage") if mine else None
if tools is not None:
    with tools:
        chosen = ui.pick_run(mine, key="manage_run", link=False)  # the user's choice: not a link
        if st.session_state.get("_manage_for") != chosen.id:  # another run: its name, nothing ticked
            st.session_state["rename_to"], st.session_state["confirm_delete"] = chosen.label, False
            st.session_state["_manage_for"] = chosen.id
        new_label = st.text_input("New name", max_chars=80, key="rename_to")
        col1, col2 = st.columns(2)
        with col1:
            if ui.action_button("Rename", key="rename"):
                try:
                    store.rename(chosen.id, new_label)
                    st.rerun()
                except (ValueError, RuntimeError) as e:  # a bad name, StoreError, RunDamaged
                    st.error(md(e))
        confirm = col2.checkbox("I want to delete this run and its files", key="confirm_delete")
        with col2:
            if ui.action_button("Delete", key="delete", disabled=not confirm):
                try:
                    store.delete(chosen.id)
                    st.query_params.clear()
                    st.rerun()
                except (RuntimeError, StoreError) as e:
                    st.error(str(e))

tools = ui.lazy_expander("Export or import a run", key="runs_port")
if tools is not None:
    with tools:
        exportable = {s.id: s for s in shown_runs if not s.damaged}
        if linked is not None and not linked.damaged:
            exportable = {linked.id: linked, **exportable}
        if exportable and st.session_state.get("export_run") not in exportable:
            st.session_state["export_run"] = next(iter(exportable))  # e.g. the first run just imported
        chosen = exportable.get(st.selectbox("Run to export", list(exportable), key="export_run",
                                             format_func=ui.run_labels(exportable.values()).__getitem__))
        if chosen is not None:  # each file is made only when its button is clicked
            run = store.get(chosen.id)
            c1, c2, c3, c4 = st.columns(4)
            ui.download_button("Bundle (.zip)", lambda: bundle_bytes(run), f"{run.id}.zip", "application/zip",
                               key="dl_bundle", container=c1, help="everything the pages need to show this "
                               "run elsewhere; import it with `python -m cifar_app import` or below")
            ui.download_button("Metrics (.csv)", lambda: metrics_csv(run), f"{run.id}-metrics.csv",
                               "text/csv",
                               key="dl_metrics", container=c2)
            if chosen.has_model:
                def predictions() -> str:
                    names = data.test_names if data else None
                    names = names[:run.settings().test_limit] if names else None
                    return predictions_csv(run, names)

                ui.download_button("Predictions (.csv)", predictions, f"{run.id}-predictions.csv", "text/csv",
                                   key="dl_predictions", container=c3)
                def onnx_file() -> bytes:  # torch: only when asked
                    from cifar_app.store.onnx import onnx_bytes

                    return onnx_bytes(run)

                ui.download_button("Model (.onnx)", onnx_file, f"{run.id}.onnx",
                                   "application/octet-stream", key="dl_onnx", container=c4,
                                   help="exported when clicked; input float32 (N, 3, 32, 32) RGB in "
                                   "[0, 1]; output logits (N, 10)")
        bundle = st.file_uploader("Import a bundle (.zip)", type=["zip"], key="import_bundle",
                                  disabled=not ui.may(Action.CHANGE), help=gate.upload_help()
                                  if ui.may(Action.CHANGE) else ui.READ_ONLY_HELP)
        if bundle is not None and ui.action_button("Import", key="import"):
            try:
                new = import_bundle(store, bundle.getvalue(), origin=bundle.name)
                st.success(f"Imported as **{new.id}** ({md(new.label)}).")
            except (BundleError, StoreError) as e:
                st.error(f"Not imported: {md(e)}")
