"""Claims: every claim of the seed about BN, GN and LN, with the verdict computed from the store."""

import streamlit as st

from cifar_app.core.settings import SettingsError
from cifar_app.core.stats import Verdict
from cifar_app.lab.backends import start_experiment
from cifar_app.lab.claims import recipe_note
from cifar_app.lab.experiments import ExperimentStore
from cifar_app.lab.presets import PRESETS
from cifar_app.store.fileio import StoreError
from cifar_app.web import ui
from cifar_app.web.app import page_path
from cifar_app.web.charts import claim_plot
from cifar_app.web.text import for_markdown as md

BADGE = {
    Verdict.HOLDS: "green",
    Verdict.DOES_NOT_HOLD: "red",
    Verdict.INCONCLUSIVE: "orange",
    Verdict.NOT_MEASURED: "gray",
    Verdict.NOT_TESTABLE: "gray",
    Verdict.BY_CONSTRUCTION: "blue",
    Verdict.DAMAGED: "red",
}

ui.page_setup()
st.title("The seed's claims")
st.caption(
    "Each row is a claim in the seed's words, the comparison that decides it (stated in advance) "
    "and a verdict computed now from the experiments and runs in this store. A row holds or does "
    "not hold only when the effect's 95% interval excludes zero; otherwise it is inconclusive and "
    "says what the design could detect. Every seed is a point on the plot, with the mean and its "
    "95% interval."
)
for i, row in enumerate(ui.claims()):
    with st.container(border=True):
        left, right = st.columns([3, 2])
        left.markdown(
            f"**“{md(row['claim'])}”**  \n:{BADGE[row['verdict']]}-badge[{row['verdict']}] "
            f"— tested by: {md(row['tested_by'])} · evidence: {md(row['evidence_kind'])}"
        )
        left.caption(f"Rule: {md(row['rule'])}")
        if row["effect"] is not None:
            low, high = row["ci95"] or (None, None)
            ci = "unbounded" if low is None or high is None else f"[{low:+.3g}, {high:+.3g}]"
            left.markdown(
                f"**Effect** {row['effect']:+.3g} {md(row['unit'])}, 95% interval {ci}, "
                f"n = {' vs '.join(map(str, row['n']))}, detects ≥ {row['mde']:.3g} — "
                f"{md(row['decided_by'])}"
            )
        if row["figure"]:
            left.markdown(md(row["figure"]))
        if row["paper"]:
            left.caption(f"Paper: {md(row['paper']['text'])} ({md(row['paper']['source'])})")
        for sec in row["secondary"]:
            left.caption(md(sec["text"]))
        if row["note"]:
            left.caption(md(row["note"]))
        if note := recipe_note(row):
            left.caption(f"⚠ {md(note[0].upper() + note[1:])}.")
        if row["experiment"] and row["runs"]:  # shipped results have no runs in this store
            runs = " · ".join(f"[run {k + 1}](train?run={r})" for k, r in enumerate(row["runs"][:12]))
            left.markdown(f"[the experiment](experiments?exp={row['experiment']}) · {runs}")
        elif row["runs"]:
            left.markdown(" · ".join(f"[{r}](inside?run={r})" for r in row["runs"]))
        if (row["verdict"] in (Verdict.NOT_MEASURED, Verdict.DAMAGED) or note) and row[
            "tested_by"
        ] in PRESETS:
            preset = row["tested_by"]
            if ui.action_button(f"Run the {preset} preset", key=f"claim_run_{i}"):
                if ui.dataset_info() is None:  # the job loads it; the server only looks
                    ui.data_missing_hint()
                else:
                    try:
                        p = PRESETS[preset]
                        exps = ExperimentStore(ui.store())
                        exp = exps.create(preset, *p.spec(), preset=preset)
                        start_experiment(exps, exp.id, ui.data_dir())
                        st.switch_page(page_path("experiments"), query_params={"exp": exp.id})
                    except (SettingsError, StoreError) as e:
                        st.error(str(e))
        fig = claim_plot(row)
        if fig is not None:
            right.plotly_chart(fig, key=f"claim_{i}", width="stretch")
