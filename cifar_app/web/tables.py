"""Tables and default choices over runs (pure functions of run summaries and metrics)."""

from __future__ import annotations

import re
from collections.abc import Callable, Container
from dataclasses import dataclass

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


# The Runs page's orders: a key and whether larger comes first. "newest first" keeps the listing's
# order (user runs newest first, then the reference runs).
RUN_SORTS: dict[str, tuple[Callable[[RunSummary], object] | None, bool]] = {
    "newest first": (None, False),
    "best test accuracy": (lambda s: -1.0 if s.best_test_acc is None else s.best_test_acc, True),
    "name": (lambda s: s.label.casefold(), False),
    "normalization": (lambda s: NORM_ORDER.index(s.norm) if s.norm in NORM_ORDER else len(NORM_ORDER), False),
    "training time": (lambda s: s.seconds, True),
}
PAGE_SIZE = 50


@dataclass(frozen=True)
class RunQuery:
    """What the Runs page shows: the runs matching every filter given, in one order, one page.

    norms, states: keep runs with one of these (empty: any); experiment: runs of that experiment id
    (None: any); text: in the label, id or settings, any case; page: 1-based, clamped to the last."""

    norms: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    experiment: str | None = None
    text: str = ""
    sort: str = "newest first"
    page: int = 1
    size: int = PAGE_SIZE


@dataclass(frozen=True)
class RunPage:
    runs: list[RunSummary]   # this page's runs
    matching: int            # runs matching the filters
    page: int                # the page shown (1-based)
    pages: int               # pages in all (at least 1)


def query_runs(summaries: list[RunSummary], q: RunQuery) -> RunPage:
    """The page of ``summaries`` (in ``RunStore.summaries()`` order) that ``q`` asks for."""
    text = q.text.strip().casefold()
    kept = [s for s in summaries
            if (not q.norms or s.norm in q.norms) and (not q.states or s.status in q.states)
            and (q.experiment is None or s.tags.get("experiment") == q.experiment)
            and (not text or text in s.label.casefold() or text in s.id or text in s.changes.casefold())]
    key, descending = RUN_SORTS.get(q.sort, RUN_SORTS["newest first"])
    if key is not None:
        kept.sort(key=key, reverse=descending)  # stable: ties keep the listing's order
    size = max(1, q.size)
    pages = max(1, -(-len(kept) // size))
    page = min(max(1, q.page), pages)
    return RunPage(kept[(page - 1) * size:page * size], len(kept), page, pages)


@dataclass(frozen=True)
class SelectionLink:
    """A button under the Runs page's table: another page, opened on the runs selected in it. It is
    how a run beyond the newest ``ui.MAX_OPTIONS`` reaches a page whose picker does not offer it."""

    key: str
    label: str
    page: str                    # the page's name (``app.PAGES``)
    query: dict[str, str]        # its URL parameters; empty: nothing selected fits (``why``)
    why: str


DISAGREE_MOST = 4  # runs the Misclassified page's "Where runs disagree" compares at once


def selection_links(selected: list[RunSummary], probed: Container[str]) -> list[SelectionLink]:
    """The Runs page's buttons for the ``selected`` runs (``probed``: those with probe records):
    Compare those with an epoch; Inside those with probe records; Misclassified for one run with a
    model, or where 2 to 4 disagree; Classify with one."""
    ok = [s for s in selected if not s.damaged]
    curves = [s.id for s in ok if s.epoch > 0]
    inside = [s.id for s in ok if s.id in probed]
    models = [s.id for s in ok if s.has_model]

    def n(ids: list[str]) -> str:
        return f" ({len(ids)})" if ids else ""

    mistakes = ({"run": models[0]} if len(models) == 1 else
                {"runs": ",".join(models)} if 2 <= len(models) <= DISAGREE_MOST else {})
    return [
        SelectionLink("compare_selected", f"Compare{n(curves)}", "compare",
                      {"runs": ",".join(curves)} if curves else {},
                      "select runs that have finished an epoch (the boxes at the table's left)"),
        SelectionLink("inside_selected", f"Look inside{n(inside)}", "inside",
                      {"runs": ",".join(inside)} if inside else {},
                      "select runs that recorded probes (trained with this version of the lab)"),
        SelectionLink("mistakes_selected", "Where they disagree" if len(models) > 1 else "Mistakes",
                      "misclassified", mistakes,
                      f"select one run with a trained model, or 2 to {DISAGREE_MOST} to see where "
                      "they disagree"),
        SelectionLink("classify_selected", "Classify with it", "classify",
                      {"run": models[0]} if len(models) == 1 else {},
                      "select one run with a trained model"),
    ]


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


def fill_blocks(text: str, kind: str, make: Callable[[str], str | None], named: bool = False) -> str:
    """``text`` with the body of each generated block ``<!-- KIND -->`` ... ``<!-- /KIND -->``
    (``named``: ``<!-- KIND NAME -->`` ... ``<!-- /KIND NAME -->``) replaced by ``make(NAME or
    KIND)``; ``None`` leaves that block as it is. An empty block (a new one) is filled too, and
    each block ends at its own closing marker, not at a later block's of the same name."""
    tag, end = (rf"{re.escape(kind)} (\S+)", rf"{re.escape(kind)} \2") if named else (re.escape(kind),) * 2

    def one(m: re.Match) -> str:
        body = make(m.group(2) if named else kind)
        return m.group(0) if body is None else f"{m.group(1)}\n{body}\n<!-- /{m.group(1)[5:-4]} -->"

    return re.sub(rf"(<!-- {tag} -->)\n(?:.*?\n)??<!-- /{end} -->", one, text, flags=re.S)
