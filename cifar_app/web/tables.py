"""Tables and default choices over runs (pure functions of run summaries and metrics)."""

from __future__ import annotations

from cifar_app.core.norms import NORMS
from cifar_app.core.records import EpochStats
from cifar_app.store.run import RunSummary
from cifar_app.store.states import PROBLEMS, RunState
from cifar_app.web import access

NORM_ORDER = NORMS  # the registry's order


def default_selection(summaries: list[RunSummary]) -> list[str]:
    """Ids of the latest run of each normalization, preferring completed runs and user runs
    (``summaries`` in ``RunStore.list()`` order: user runs newest first, then reference runs);
    damaged runs are never chosen."""
    chosen: dict[str, str] = {}
    for completed_only in (True, False):
        for s in summaries:
            if s.damaged or s.norm in chosen or (completed_only and s.status != RunState.COMPLETED):
                continue
            chosen[s.norm] = s.id
    return [chosen[n] for n in sorted(chosen, key=lambda n: NORM_ORDER.index(n) if n in NORM_ORDER else 9)]


def _pct(x: float | None) -> float | None:
    return None if x is None else round(100 * x, 2)


def runs_table_rows(summaries: list[RunSummary], show_paths: bool = True) -> list[dict]:
    """The Runs page's table: one row per run; a damaged run says which file and why (server paths
    only when ``show_paths``)."""
    rows = []
    for s in summaries:
        rows.append({
            "name": s.label + (" (reference)" if s.reference else ""),
            "norm": s.norm, "status": s.status,
            "settings": s.changes or "default recipe",
            "epoch": f"{s.epoch}/{'?' if s.epochs is None else s.epochs}",
            "best test acc (%)": _pct(s.best_test_acc),
            "params": s.params, "minutes": round(s.seconds / 60, 1),
            "experiment": s.tags.get("experiment") or "",
            "problem": (access.shown(s.error, show_paths) or "") if s.status in PROBLEMS else "",
            "open": f"train?run={s.id}", "id": s.id,
        })
    return rows


def comparison_rows(runs: list[tuple[RunSummary, list[EpochStats]]]) -> list[dict]:
    """One row per (summary, epoch records) with at least one epoch: parameters, best/final test
    accuracy (%), epoch of best, seconds per epoch, train-vs-test gap (percentage points)."""
    rows = []
    for s, epochs in runs:
        if not epochs:
            continue
        last = epochs[-1]
        best = max(epochs, key=lambda e: e.test_acc)
        rows.append({
            "run": s.label, "norm": s.norm, "settings": s.changes or "default recipe",
            "status": s.status, "params": s.params,
            "epochs": f"{len(epochs)}/{s.epochs}",
            "best test acc (%)": _pct(best.test_acc), "epoch of best": best.epoch,
            "final test acc (%)": _pct(last.test_acc),
            "final train acc (%)": _pct(last.train_acc),
            "gap (pts)": round(100 * (last.train_acc - last.test_acc), 2),
            "s / epoch": round(sum(e.seconds for e in epochs) / len(epochs), 1),
        })
    return rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (the README's tables, written by the scripts in benchmarks/)."""
    return "\n".join(["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
                     + ["| " + " | ".join(r) + " |" for r in rows])
