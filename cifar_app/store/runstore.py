"""The run store: a folder of run folders (``RunStore``), and the reference runs shipped with the app.

Only the run store reads or writes a run's files: ``formats`` declares and validates each file,
``fileio`` writes them atomically and locks them, ``run.Run`` is one run folder; everything else goes
through ``Run`` and ``RunStore``. A new run is assembled in a hidden temp folder and renamed into
place; a deleted run is first renamed out of sight.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cifar_app.core.records import BatchStats, EpochStats
from cifar_app.core.settings import TrainSettings, valid_run_id
from cifar_app.store.fileio import StoreError, atomic_write, os_reason, write_json_atomic
from cifar_app.store.formats import (
    INSIDE,
    LANDSCAPE,
    METRICS,
    MODEL,
    PORTABLE,
    PREDICTIONS,
    RESULTS,
    RUN_FILES,
    SETTINGS,
    STATUS,
    check_label,
)
from cifar_app.store.index import RunIndex
from cifar_app.store.run import Run, RunNotFound, RunSummary
from cifar_app.store.states import ACTIVE, RunState

REFERENCE_ROOT = Path(__file__).parent / "reference_runs"


def default_reference_root() -> Path | None:
    """``$CIFAR_APP_REFERENCE_RUNS`` if set (empty hides reference runs), else the shipped folder."""
    value = os.environ.get("CIFAR_APP_REFERENCE_RUNS")
    if value is None:
        return REFERENCE_ROOT
    return Path(value) if value else None


def default_runs_dir() -> Path:
    """``$CIFAR_APP_RUNS`` if set, else ``./runs``."""
    return Path(os.environ.get("CIFAR_APP_RUNS") or "runs")




class RunStore:
    """All runs under ``root`` plus the shipped reference runs.

    Args:
        root: the user's runs directory (created on first write); default ``default_runs_dir()``.
        reference_root: folder of read-only reference runs; None hides them; default
            ``default_reference_root()``.
        recheck_s: for a store that lists again and again (the dashboard's): see ``RunIndex``. 0
            (the default): every listing checks every run's files.
    """

    def __init__(self, root: Path | str | None = None,
                 reference_root: Path | None | str = "default", recheck_s: float = 0.0) -> None:
        self.root = Path(root) if root is not None else default_runs_dir()
        self.reference_root = default_reference_root() if reference_root == "default" else reference_root
        self.index_notice: str | None = None  # set by summaries() when it rebuilt a damaged index
        self._index = RunIndex(self.root, recheck_s)  # kept: it remembers what it last listed
        self._notice: tuple[str, float] | None = None  # the last rebuild's notice, and when

    def ensure_root(self) -> Path:
        """Create the runs folder if needed; ``StoreError`` (path and reason) when it cannot be
        a writable folder."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise StoreError(f"cannot use {self.root} as the runs folder: it is not a folder") from None
        except OSError as e:
            raise StoreError(f"cannot create the runs folder {self.root}: {os_reason(e)}") from None
        if not self.root.is_dir():
            raise StoreError(f"cannot use {self.root} as the runs folder: it is not a folder")
        return self.root

    def create(self, settings: TrainSettings, label: str | None = None,
               tags: dict | None = None) -> Run:
        """New queued run with a generated id; ``settings`` are validated and stored. The run
        appears whole or not at all (assembled in a hidden folder, then renamed into place).
        ``tags`` (JSON values) are kept in the status, e.g. ``{"experiment": ID}``."""
        settings.validate()
        label = check_label(label) if label and label.strip() else None

        def write(folder: Path) -> None:
            now = time.time()
            write_json_atomic(folder / SETTINGS, settings.to_dict())
            write_json_atomic(folder / STATUS, {
                "state": RunState.QUEUED, "label": label, "created": now,
                "heartbeat": now, "pid": None, "params": settings.param_count(), "tags": tags or {}})

        return self._new_run(write, settings.norm)

    def add_run(self, files: dict[str, bytes], status: dict, preferred_id: str | None = None) -> Run:
        """A new run from already validated file contents (``PORTABLE`` names) and a status, under
        ``preferred_id`` when that is a valid id not taken, else a fresh one. Whole or not at all."""
        unknown = set(files) - set(PORTABLE)
        if unknown or SETTINGS not in files:
            raise ValueError(f"not run files: {sorted(unknown) or 'no settings.json'}")

        def write(folder: Path) -> None:
            for name, data in files.items():
                atomic_write(folder / name, lambda f, data=data: f.write(data))
            write_json_atomic(folder / STATUS, status)

        return self._new_run(write, "import", preferred_id)

    def _new_run(self, write: Callable[[Path], None], kind: str, preferred_id: str | None = None) -> Run:
        """Fill a hidden staging folder with ``write(folder)``, then rename it to ``preferred_id``
        when that is a valid id free among user and reference runs, else to a fresh
        ``<time>-<kind>-<hex>`` id. No partial run is ever visible."""
        root = self.ensure_root()
        try:
            staging = Path(tempfile.mkdtemp(prefix=".new-", dir=root))
            staging.chmod(0o755)
        except OSError as e:
            raise StoreError(f"cannot write to the runs folder {root}: {os_reason(e)}") from None
        try:
            write(staging)
            candidates = [preferred_id] if valid_run_id(preferred_id) else []
            for _ in range(100):
                run_id = candidates.pop() if candidates else (
                    f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(3)}")
                taken = self.reference_root is not None and (self.reference_root / run_id).exists()
                if taken or (root / run_id).exists():
                    continue
                try:
                    os.rename(staging, root / run_id)
                    return Run(root / run_id)
                except OSError as e:
                    if (root / run_id).exists():
                        continue
                    raise StoreError(f"cannot write to the runs folder {root}: {os_reason(e)}") from None
            raise StoreError(f"could not allocate a run id in {root}")  # pragma: no cover
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def get(self, run_id: str) -> Run:
        """The run with this id (user runs first, then reference runs); ``RunNotFound`` otherwise."""
        if not valid_run_id(run_id):
            raise RunNotFound(run_id)
        if _is_run_dir(self.root / run_id):
            return Run(self.root / run_id)
        if self.reference_root is not None and _is_run_dir(self.reference_root / run_id):
            return Run(self.reference_root / run_id, reference=True)
        raise RunNotFound(run_id)

    def list(self) -> list[Run]:
        """User runs, newest first, then reference runs in name order (damaged runs included)."""
        runs: list[Run] = []
        if self.root.is_dir():
            try:
                mine = [p for p in self.root.iterdir() if valid_run_id(p.name) and _is_run_dir(p)]
            except OSError:
                mine = []
            runs += [Run(p) for p in sorted(mine, key=lambda p: p.name, reverse=True)]
        if self.reference_root is not None and self.reference_root.is_dir():
            refs = [p for p in self.reference_root.iterdir() if valid_run_id(p.name) and _is_run_dir(p)]
            runs += [Run(p, reference=True) for p in sorted(refs)]
        return runs

    def summaries(self) -> list[RunSummary]:
        """``summary()`` of every run, in ``list()`` order, through the run index (``index.py``):
        only runs changed since the last listing are read. ``index_notice`` says when a damaged
        index had to be rebuilt: at this listing, or, for a store with ``recheck_s`` (the
        dashboard's, whose pages share it), within the last ``NOTICE_S``."""
        out = self._index.summaries(self._folders())
        notice, self._index.notice = self._index.notice, None
        if notice is not None:
            self._notice = notice, time.monotonic()
        if self._index.recheck_s > 0 and self._notice and time.monotonic() - self._notice[1] < NOTICE_S:
            notice = self._notice[0]  # a store many pages share: every page shows it for a while
        self.index_notice = notice
        return out

    def warm(self) -> None:
        """List once, so that a store that lists again and again (``recheck_s``) remembers every
        run before its first caller asks; a rebuild's notice is kept for that caller."""
        self._index.summaries(self._folders())

    def _folders(self) -> list[tuple[Path, bool]]:
        folders = [(self.root, False)]
        if self.reference_root is not None:
            folders.append((self.reference_root, True))
        return folders

    def summary(self, run_id: str) -> RunSummary:
        """One run's ``summary()`` through the run index (its logs are read only when its files
        changed since its row); ``RunNotFound`` for an unknown id."""
        return RunIndex(self.root).summary(self.get(run_id))

    def rename(self, run_id: str, label: str) -> None:
        """Set a run's display label (the id never changes)."""
        self.get(run_id).update_status(label=check_label(label))

    def delete(self, run_id: str) -> None:
        """Delete a user run that is not training (a damaged one too: the user asked). Reference
        runs and active runs refuse. The folder is renamed out of sight first, so a failure leaves
        the run whole."""
        run = self.get(run_id)
        run._writable()
        state = run.state()
        if state in ACTIVE:
            raise RuntimeError(f"{run_id} is still {state}: stop it first")
        trash = self.root / f".deleted-{run_id}-{secrets.token_hex(3)}"
        try:
            os.rename(run.path, trash)
        except OSError as e:
            raise StoreError(f"cannot delete {run.path}: {os_reason(e)}") from None
        shutil.rmtree(trash, ignore_errors=True)


def _is_run_dir(p: Path) -> bool:
    return p.is_dir() and any((p / name).is_file() for name in RUN_FILES)


def copy_run(src: Run, dst: Path, status: dict, batch_every: int = 1) -> Run:
    """Write ``src`` as a new run folder ``dst`` (replacing one there): its settings, final model,
    test predictions and metrics (batch records thinned to every ``batch_every``-th step plus each
    epoch's last, without wall-clock times; every epoch record kept), with ``status`` as its
    status. Used to ship reference runs; the copy appears whole or not at all."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dst.name}-", dir=dst.parent))
    staging.chmod(0o755)
    try:
        for name in (SETTINGS, MODEL, PREDICTIONS, INSIDE, LANDSCAPE, *(f"{r}.json" for r in RESULTS)):
            path = src.path / name
            if name not in (SETTINGS, MODEL, PREDICTIONS) and (not path.is_file() or not path.stat().st_size):
                continue  # an optional record the run never wrote (an empty log is none)
            data = path.read_bytes()
            atomic_write(staging / name, lambda f, data=data: f.write(data))
        m = src.metrics()
        kept = [BatchStats(**{**b.__dict__, "t": None}) for b in m.batches
                if b.step % batch_every == 0 or b.batch == b.batches]
        ordered = sorted([*kept, *m.epochs],
                         key=lambda r: (r.epoch, isinstance(r, EpochStats), getattr(r, "step", 0)))
        text = "".join(json.dumps(r.to_record(), separators=(",", ":")) + "\n" for r in ordered)
        atomic_write(staging / METRICS, lambda f: f.write(text.encode()))
        write_json_atomic(staging / STATUS, status)
        if dst.exists():
            trash = dst.with_name(f".replaced-{dst.name}-{secrets.token_hex(3)}")
            os.rename(dst, trash)
            shutil.rmtree(trash, ignore_errors=True)
        os.rename(staging, dst)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Run(dst)


RECHECK_S = 10.0  # the dashboard's store: a finished run's files are stamped at most this often
NOTICE_S = 600.0  # and it says that its index was rebuilt for this long after


@functools.lru_cache(maxsize=16)
def _store_at(root: str) -> RunStore:
    return RunStore(root, recheck_s=RECHECK_S)


def default_store() -> RunStore:
    """The store of ``default_runs_dir()``, one per folder in this process: the one the dashboard's
    pages and its live routes share. It lists again and again, so it remembers what it listed
    (``RECHECK_S``: see ``RunIndex``)."""
    return _store_at(str(default_runs_dir()))
