"""The floor under ``many_runs.py``'s page times: a bare Streamlit app that draws the same elements
as the lab's Runs and Compare pages (the same widgets, a 12-column 50-row table, a Plotly figure
of four panels of four runs, the navigation of nine pages), from data made up here, with no run store, no
index and no logs behind it. What a page of the lab takes beyond this app's page is the lab's own
work; what this app takes is what Streamlit takes to draw that page on this machine. (Its
Experiments page is a title only: the lab's is not mirrored.)"""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from plotly.subplots import make_subplots

NORMS = ["batch", "group", "layer", "none"]
RUNS = 10_000
ROWS = pd.DataFrame({
    "name": [f"a run named {i:05d}" for i in range(50)], "norm": [NORMS[i % 4] for i in range(50)],
    "status": ["completed"] * 50, "settings": ["default recipe"] * 50, "epoch": ["20/20"] * 50,
    "best test acc (%)": [80 + i / 10 for i in range(50)], "params": [49482] * 50,
    "minutes": [12.5] * 50, "experiment": [""] * 50, "problem": [""] * 50,
    "open": [f"train?run=run-{i:05d}" for i in range(50)],
    "id": [f"20300101-000000-run-{i:05d}" for i in range(50)]})
COMPARED = pd.DataFrame({
    "run": [f"a run named {i:05d}" for i in range(4)], "norm": NORMS, "settings": ["default recipe"] * 4,
    "status": ["completed"] * 4, "params": [49482] * 4, "epochs": ["20/20"] * 4,
    "best test acc (%)": [84.1, 83.2, 82.7, 80.0], "epoch of best": [20] * 4,
    "final test acc (%)": [84.0, 83.1, 82.6, 79.9], "final train acc (%)": [85.0, 84.0, 83.0, 81.0],
    "gap (pts)": [1.0, 0.9, 0.4, 1.1], "s / epoch": [36.2] * 4})
TEXT = ("A paragraph of about the length of the lab's own, which says what the page is for, what can "
        "be done on it, and where to go next: " * 2)


def runs() -> None:
    st.title("CIFAR-10 Normalization Lab")
    st.markdown(TEXT)
    st.subheader("Dataset")
    st.warning("CIFAR-10 is not in the data folder `data`.")
    st.markdown(TEXT)
    st.button("Download CIFAR-10", type="primary")
    st.subheader("Runs")
    c1, c2, c3, c4 = st.columns([2, 2, 2, 1])
    c1.multiselect("Normalization", NORMS, placeholder="any")
    c2.multiselect("State", ["completed"], placeholder="any")
    c3.text_input("Name contains", max_chars=80, help="any part of the run's name")
    c4.selectbox("Order", ["newest first", "oldest first", "best accuracy first", "name"])
    st.number_input(f"Page (of {RUNS // 50:,})", min_value=1, max_value=RUNS // 50, step=1)
    st.caption(f"{RUNS:,} of {RUNS:,} runs match; showing 1–50.")
    st.dataframe(ROWS, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row",
                 key="runs",
                 column_config={"open": st.column_config.LinkColumn("open", display_text="curves"),
                                "params": st.column_config.NumberColumn(format="%d"),
                                "best test acc (%)": st.column_config.NumberColumn(format="%.2f")})
    for column, label in zip(st.columns(4), ("Compare", "Look inside", "Mistakes", "Classify with it")):
        column.button(label, disabled=True, width="stretch", help="select runs in the table")
    st.caption(f"Runs are stored in `runs`; {RUNS:,} runs, total training time 2,083 h.")
    st.expander("Rename or delete a run (of those shown)", key="manage", on_change="rerun")
    st.expander("Export or import", key="port", on_change="rerun")


def compare() -> None:
    st.title("Compare runs")
    st.caption(f"The list offers the 1,000 newest of {RUNS:,} runs; to compare others, select them on "
               "the **Runs** page.")
    options = [f"a run named {i:05d} · {NORMS[i % 4]} · completed · 84.10%" for i in range(1000)]
    st.multiselect("Runs", options, default=options[:4])
    epochs = list(range(1, 21))
    figure = make_subplots(rows=2, cols=2, subplot_titles=[f"panel {panel}" for panel in range(4)])
    for panel in range(4):
        for run in range(4):
            figure.add_trace(go.Scatter(x=epochs, y=[run + panel + e / 20 for e in epochs],
                                        mode="lines+markers", name=f"a run named {run:05d}",
                                        legendgroup=str(run), showlegend=panel == 0),
                             row=panel // 2 + 1, col=panel % 2 + 1)
    figure.update_layout(height=760, legend=dict(orientation="h", y=-0.1))
    st.plotly_chart(figure, key="panels", width="stretch")
    st.dataframe(COMPARED, hide_index=True, width="stretch")
    st.caption(TEXT)


def title(name: str):
    def page() -> None:
        st.title(name)
    return page


st.set_page_config(page_title="floor", layout="wide")
st.navigation([st.Page(runs, title="Runs", icon=":material/home:", default=True),
               st.Page(title("Train"), title="Train", url_path="train", icon=":material/model_training:"),
               st.Page(compare, title="Compare", url_path="compare", icon=":material/compare_arrows:"),
               *(st.Page(title(n), title=n, url_path=n.lower(), icon=":material/science:")
                 for n in ("Experiments", "Claims", "Inside", "Misclassified", "Classify", "Model"))]).run()
