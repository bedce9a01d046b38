"""The floor under ``many_runs.py``'s page times: a bare Streamlit app that draws what the lab's
Runs, Compare and Experiments pages wait for (a 50-row table with row selection; four Plotly line
charts and a table; a title), from data made up here, with no run store behind it. What a page of
the lab takes beyond this app's page is the lab's."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

ROWS = pd.DataFrame({"id": [f"run-{i:05d}" for i in range(50)], "norm": ["batch", "group"] * 25,
                     "best test acc (%)": [80 + i / 10 for i in range(50)]})


def runs() -> None:
    st.title("Runs")
    st.dataframe(ROWS, hide_index=True, on_select="rerun", selection_mode="multi-row", key="runs")


def compare() -> None:
    st.title("Compare")
    epochs = list(range(1, 21))
    for chart in range(4):
        lines = [go.Scatter(x=epochs, y=[run + chart + e / 20 for e in epochs], name=f"run {run}")
                 for run in range(4)]
        st.plotly_chart(go.Figure(lines), key=f"chart{chart}")
    st.dataframe(ROWS.head(4), hide_index=True)


def experiments() -> None:
    st.title("Experiments")


st.set_page_config(page_title="floor", layout="wide")
st.navigation([st.Page(runs, title="Runs", default=True),
               st.Page(compare, title="Compare", url_path="compare"),
               st.Page(experiments, title="Experiments", url_path="experiments")]).run()
