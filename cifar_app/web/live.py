"""What a page watching a run shows, as JSON-ready data (pure functions over the run store).

The Train page draws a running run through a small browser component (``live_view.js``) that asks
the server for :func:`run_snapshot` every second and for a :func:`figure` when there is news, and
patches the page in place, instead of re-running Streamlit fragments; the Experiments page watches
:func:`experiment_snapshot`. See :mod:`cifar_app.web.webapp` for the routes and README "Watching a run"
for why.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from typing import Any

import plotly.graph_objects as go

from cifar_app.lab.experiments import Experiment, ExperimentStore
from cifar_app.store.results import PointStatus
from cifar_app.store.run import Run, RunDamaged
from cifar_app.store.states import ACTIVE, RunState
from cifar_app.web import access
from cifar_app.web.charts import batch_curves, training_curves
from cifar_app.web.progress import format_duration, training_progress


def progress_text(state: str, epoch: int, epochs: int, batch: int, batches: int,
                  images_per_s: float | None, eta_s: float | None) -> str:
    """The one-line progress summary, e.g. 'running · epoch 2/20 · batch 40/391 · 2,900 images/s ·
    5 min 10 s left'; a run that is not training says no time left ('completed · epoch 20/20 ·
    batch 391/391 · 2,900 images/s')."""
    speed = f"{images_per_s:,.0f} images/s" if images_per_s else "measuring speed"
    text = f"{state} · epoch {epoch}/{epochs} · batch {batch}/{batches or '?'} · {speed}"
    if state not in ACTIVE:
        return text
    left = f"{format_duration(eta_s)} left" if eta_s is not None else "estimating the time left"
    return f"{text} · {left}"


def run_snapshot(run: Run, show_paths: bool = True) -> dict[str, Any]:
    """Where ``run`` stands, for the live view.

    Returns a dict: ``state``; ``text`` (the progress line); ``fraction`` (0..1); ``note`` (what it is
    doing now, or None); ``error`` (why it failed or stopped, or None); ``epochs`` and ``batches``
    (records logged so far: a change in either means new data); ``probes`` (probe records in
    inside.jsonl, one per epoch after the epoch's own record; -1 when that file is damaged, which
    does not stop the rest); ``damaged`` (why the run cannot be read, or None; the other fields are
    then empty).
    """
    try:
        status, metrics, s = run.status(), run.metrics(), run.settings()
    except RunDamaged as e:
        return {"state": RunState.DAMAGED, "text": "", "fraction": 0.0, "note": None, "error": None,
                "epochs": 0, "batches": 0, "probes": 0, "damaged": e.short}
    try:
        probes = len(run.inside())
    except RunDamaged:  # the Inside page names it; training and its progress go on
        probes = -1
    state = RunState(status["state"])
    p = training_progress(metrics, s.epochs, s.batch_size, state)
    note = None
    if state == RunState.QUEUED:
        note = "Queued: waiting for the run that is training now to finish."
    elif status.get("phase") and state in ACTIVE:
        note = str(status["phase"])
    elif not metrics.batches and state in ACTIVE:
        note = "Waiting for the first batch (loading data and the model)…"
    failed = state in (RunState.FAILED, RunState.INTERRUPTED)
    error = access.shown(status["error"], show_paths) if status.get("error") and failed else None
    return {"state": state, "fraction": p.fraction, "note": note, "error": error,
            "text": progress_text(state, p.epoch, p.epochs, p.batch, p.batches, p.images_per_s, p.eta_s),
            "epochs": len(metrics.epochs), "batches": len(metrics.batches), "probes": probes,
            "damaged": None}


FIGURES = ("epochs", "batches")  # training_curves, batch_curves


def figure_version(run: Run, name: str, smoothing: float) -> str | None:
    """A fingerprint of ``figure(run, name, smoothing)``'s data, None while it has none: equal
    fingerprints give equal figures, so a page that has one is not sent it again. Raises
    ``RunDamaged`` when the run cannot be read."""
    metrics = run.metrics()
    if name == "epochs":
        last = metrics.epochs[-1] if metrics.epochs else None
        return f"e{len(metrics.epochs)}-{last.seconds}-{last.test_acc}" if last else None
    if name == "batches":
        last = metrics.batches[-1] if metrics.batches else None
        return f"b{len(metrics.batches)}-{last.step}-{last.t}-{smoothing:.2f}" if last else None
    raise ValueError(f"no figure {name!r}; there are {', '.join(FIGURES)}")


def figure(run: Run, name: str, smoothing: float) -> go.Figure | None:
    """One of the Train page's figures of ``run``: "epochs" (``charts.training_curves``) or
    "batches" (``charts.batch_curves`` with ``smoothing`` in 0..0.99); None while it has no data."""
    metrics, norm = run.metrics(), run.settings().norm
    if name == "epochs":
        return training_curves(metrics.epochs, norm, uirevision=run.id) if metrics.epochs else None
    if name == "batches":
        return batch_curves(metrics.batches, norm, smoothing, uirevision=run.id) if metrics.batches else None
    raise ValueError(f"no figure {name!r}; there are {', '.join(FIGURES)}")


def experiment_snapshot(exps: ExperimentStore, exp: Experiment,
                        points: list[PointStatus] | None = None) -> dict[str, Any]:
    """Where a sweep stands, for the live view: ``state``, ``counts`` (points per state) and
    ``version``, a fingerprint of what the Experiments page draws of it (each point's state, run,
    accuracies and error): a page whose version differs has something new to draw. ``points``:
    its ``point_statuses``, when the caller has them already (each reads every point's run)."""
    points = exps.point_statuses(exp) if points is None else points
    state = exps.state(exp, points)
    drawn = [state] + [[p.state, p.run_id, p.best_test_acc, p.final_test_acc, p.error] for p in points]
    return {"state": state, "counts": dict(Counter(p.state for p in points)),  # the version: opaque
            "version": hashlib.sha256(json.dumps(drawn).encode()).hexdigest()[:24]}
