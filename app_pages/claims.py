"""Claims: every claim of the seed about BN, GN and LN, with the verdict computed from the store."""

import streamlit as st

from cifar_app import ui
from cifar_app.charts import claim_plot
from cifar_app.claims import Verdict, evaluate, recipe_note
from cifar_app.experiments import PRESETS, ExperimentStore
from cifar_app.jobs import start_experiment
from cifar_app.runstore import StoreError
from cifar_app.settings import SettingsError

BADGE = {Verdict.HOLDS: "green", Verdict.DOES_NOT_HOLD: "red", Verdict.WITHIN_NOISE: "orange",
         Verdict.NOT_MEASURED: "gray", Verdict.NOT_TESTABLE: "gray"}

ui.page_setup()
st.title("The seed's claims")
st.caption("Each row is a claim in the seed's words, the experiment that tests it, and a verdict "
           "computed now from the experiments and runs in this store by the rule next to it. Run the "
           "experiment a row names and its verdict follows.")
for i, row in enumerate(evaluate(ui.store())):
    with st.container(border=True):
        left, right = st.columns([3, 2])
        left.markdown(f"**“{row['claim']}”**  \n:{BADGE[row['verdict']]}-badge[{row['verdict']}] "
                      f"— tested by: {row['tested_by']}")
        left.caption(f"Rule: {row['rule']}")
        if row["figure"]:
            left.markdown(row["figure"])
        if row["note"]:
            left.caption(row["note"])
        if note := recipe_note(row):
            left.caption(f"⚠ {note[0].upper()}{note[1:]}.")
        if row["experiment"] and row["runs"]:  # shipped results have no runs in this store
            runs = " · ".join(f"[run {k + 1}](train?run={r})" for k, r in enumerate(row["runs"][:12]))
            left.markdown(f"[the experiment](experiments?exp={row['experiment']}) · {runs}")
        elif row["runs"]:
            left.markdown(" · ".join(f"[{r}](inside?run={r})" for r in row["runs"]))
        if (row["verdict"] == Verdict.NOT_MEASURED or note) and row["tested_by"] in PRESETS:
            preset = row["tested_by"]
            if ui.action_button(f"Run the {preset} preset", key=f"claim_run_{i}"):
                if ui.dataset() is None:
                    ui.data_missing_hint()
                else:
                    try:
                        p = PRESETS[preset]
                        exps = ExperimentStore(ui.store())
                        exp = exps.create(preset, p.base, p.grid, list(p.rules), preset=preset)
                        start_experiment(exps, exp.id, ui.data_dir())
                        st.switch_page("app_pages/experiments.py", query_params={"exp": exp.id})
                    except (SettingsError, StoreError) as e:
                        st.error(str(e))
        fig = claim_plot(row)
        if fig is not None:
            right.plotly_chart(fig, key=f"claim_{i}", width="stretch")
