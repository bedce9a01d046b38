"""The states a run, a sweep point, a sweep and a download can be in: one enum each, and the sets of
states that decide what a page offers (Stop while active, Resume when resumable, ...).

They are ``StrEnum``s, so a state is stored in JSON as its plain name ("running") and compares equal
to it; code names them only through these classes.
"""

from __future__ import annotations

from enum import StrEnum


class RunState(StrEnum):
    """A training run's state, as ``status.json`` stores it (``DAMAGED`` is only ever derived:
    a file of the run cannot be read; ``INTERRUPTED`` is also derived from a dead process)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    DAMAGED = "damaged"


ACTIVE = frozenset({RunState.QUEUED, RunState.RUNNING})                          # a process owns it
TERMINAL = frozenset({RunState.COMPLETED, RunState.FAILED})                       # a result: not rerun
RESUMABLE = frozenset({RunState.STOPPED, RunState.FAILED, RunState.INTERRUPTED})  # Resume continues it
PROBLEMS = frozenset({RunState.DAMAGED, RunState.FAILED, RunState.INTERRUPTED})   # tables say why
IMPORTABLE = frozenset({RunState.COMPLETED, RunState.STOPPED, RunState.FAILED})   # kept by an import


class PointState(StrEnum):
    """A sweep point's state when it is not its run's: before its run exists, after it was deleted."""

    PENDING = "pending"
    DELETED = "deleted"


POINT_DONE = frozenset({*TERMINAL, PointState.DELETED})  # nothing left to run for the point


class ExperimentState(StrEnum):
    """A sweep's state, derived from its driver process and its points."""

    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"


EXPERIMENT_RESUMABLE = frozenset({ExperimentState.PENDING, ExperimentState.STOPPED,
                                  ExperimentState.INTERRUPTED})


class DownloadState(StrEnum):
    """The background CIFAR-10 download's state."""

    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
