"""Tables and default choices for comparing runs (pure functions over runs' summaries)."""

from __future__ import annotations

from .runstore import Run


def default_selection(runs: list[Run]) -> list[str]:
    """Ids of the latest run of each normalization, preferring completed runs and user runs
    (``runs`` as ``RunStore.list()`` orders them: user runs newest first, then reference runs)."""
    chosen: dict[str, str] = {}
    for completed_only in (True, False):
        for run in runs:
            s = run.summary()
            if s["norm"] in chosen or (completed_only and s["status"] != "completed"):
                continue
            chosen[s["norm"]] = run.id
    order = ["batch", "group", "layer", "none"]
    return [chosen[n] for n in sorted(chosen, key=lambda n: order.index(n) if n in order else 9)]


def comparison_rows(runs: list[Run]) -> list[dict]:
    """One row per run: parameters, best/final test accuracy (%), epoch of best, seconds per epoch,
    train-vs-test gap (percentage points)."""
    rows = []
    for run in runs:
        s, epochs = run.summary(), run.metrics().epochs
        if not epochs:
            continue
        last = epochs[-1]
        rows.append({
            "run": s["label"], "norm": s["norm"], "status": s["status"], "params": s["params"],
            "epochs": f"{len(epochs)}/{s['epochs']}",
            "best test acc (%)": round(100 * s["best_test_acc"], 2), "epoch of best": s["best_epoch"],
            "final test acc (%)": round(100 * last["test_acc"], 2),
            "final train acc (%)": round(100 * last["train_acc"], 2),
            "gap (pts)": round(100 * (last["train_acc"] - last["test_acc"]), 2),
            "s / epoch": round(sum(e["seconds"] for e in epochs) / len(epochs), 1),
        })
    return rows
