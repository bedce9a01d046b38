"""The run store: one directory per training run.

    <runs root>/<run id>/
        settings.json      TrainSettings as JSON
        status.json        state, pid, heartbeat, error, label, times (rewritten atomically)
        metrics.jsonl      append-only log: {"type": "batch", ...} and {"type": "epoch", ...} lines
        checkpoint.pt      latest epoch checkpoint (model, optimizer, scheduler) for resume
        model.pt           final weights + normalization stats + settings (inference)
        predictions.npz    final model's test-set probabilities (float16, N x 10) and labels
        stop               present = a stop was requested
        log.txt            stdout/stderr of the training process

Every whole-file write goes through a temp file and ``os.replace``, so readers never see a torn file;
the metrics log is appended and flushed line by line, and a reader skips an unfinished last line.
Run ids are generated here and checked against a strict pattern before any path is built from one.

Reference runs (trained by the project and shipped inside the package) are listed next to the user's
runs and are read-only.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .settings import TrainSettings

STATES = ("queued", "running", "completed", "failed", "stopped", "interrupted")
ACTIVE_STATES = ("queued", "running")
HEARTBEAT_STALE_S = 120.0
REFERENCE_ROOT = Path(__file__).parent / "reference_runs"
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class RunNotFound(KeyError):
    """No run with that id (or the id is malformed)."""

    def __str__(self) -> str:
        return f"no run {self.args[0]!r}" if self.args else "no such run"


class ReadOnlyRun(PermissionError):
    """A reference run cannot be changed or deleted."""


def default_reference_root() -> Path | None:
    """``$CIFAR_APP_REFERENCE_RUNS`` if set (empty hides reference runs), else the shipped folder."""
    value = os.environ.get("CIFAR_APP_REFERENCE_RUNS")
    if value is None:
        return REFERENCE_ROOT
    return Path(value) if value else None


def default_runs_dir() -> Path:
    """``$CIFAR_APP_RUNS`` if set, else ``./runs``."""
    return Path(os.environ.get("CIFAR_APP_RUNS") or "runs")


def write_json_atomic(path: Path, obj: object) -> None:
    """Write JSON to ``path`` through a temp file + fsync + rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path: Path, default: object = None) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a live (not zombie) process on this machine."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass
class Metrics:
    """Parsed metrics log: per-batch and per-epoch records (dicts), last write wins per key."""

    batches: list[dict]
    epochs: list[dict]


class Run:
    """One run directory. Reading is always allowed; writing only for user runs."""

    def __init__(self, path: Path, reference: bool = False) -> None:
        self.path = Path(path)
        self.id = self.path.name
        self.reference = reference

    def __repr__(self) -> str:
        return f"Run({self.id!r}{', reference' if self.reference else ''})"

    # ------------------------------------------------------------------ files
    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def model_path(self) -> Path:
        return self.path / "model.pt"

    @property
    def predictions_path(self) -> Path:
        return self.path / "predictions.npz"

    @property
    def log_path(self) -> Path:
        return self.path / "log.txt"

    def _writable(self) -> None:
        if self.reference:
            raise ReadOnlyRun(f"{self.id} is a reference run and cannot be changed")

    # ------------------------------------------------------------------ settings & status
    def settings(self) -> TrainSettings:
        return TrainSettings.from_dict(_read_json(self.path / "settings.json", {}))

    def raw_status(self) -> dict:
        """status.json as written, without the liveness check."""
        return _read_json(self.path / "status.json", {}) or {}

    def status(self) -> dict:
        """status.json, with a queued/running run whose process died reported as 'interrupted'."""
        st = self.raw_status()
        if st.get("state") in ACTIVE_STATES and not self.reference:
            stale = time.time() - float(st.get("heartbeat") or 0) > HEARTBEAT_STALE_S
            if stale or not pid_alive(st.get("pid")):
                st = {**st, "state": "interrupted",
                      "error": st.get("error") or "the training process ended without finishing"}
        return st

    def update_status(self, **fields: object) -> dict:
        """Merge ``fields`` into status.json (atomically) and return the new status."""
        self._writable()
        st = {**self.raw_status(), **fields}
        write_json_atomic(self.path / "status.json", st)
        return st

    def heartbeat(self, **fields: object) -> None:
        self.update_status(heartbeat=time.time(), **fields)

    @property
    def label(self) -> str:
        return str(self.raw_status().get("label") or self.id)

    # ------------------------------------------------------------------ metrics
    def append_metrics(self, *records: dict) -> None:
        """Append records to metrics.jsonl, one line each, flushed."""
        self._writable()
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            for r in records:
                f.write(json.dumps(r, separators=(",", ":")) + "\n")
            f.flush()

    def metrics(self) -> Metrics:
        """Batch and epoch records; later records replace earlier ones of the same step/epoch
        (a resumed run re-does its unfinished epoch), and a torn last line is skipped."""
        try:
            text = (self.path / "metrics.jsonl").read_text(encoding="utf-8")
        except OSError:
            return Metrics([], [])
        batches: dict[int, dict] = {}
        epochs: dict[int, dict] = {}
        for line in text.split("\n")[:-1]:  # the part after the last newline may be unfinished
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("type") == "batch":
                batches[int(r["step"])] = r
            elif r.get("type") == "epoch":
                epochs[int(r["epoch"])] = r
        last_epoch = max(epochs, default=0)
        return Metrics([batches[k] for k in sorted(batches)],
                       [epochs[k] for k in sorted(epochs) if k <= last_epoch])

    def truncate_metrics_after(self, epoch: int) -> None:
        """Drop records past ``epoch`` (used before resuming from that epoch's checkpoint)."""
        self._writable()
        m = self.metrics()
        keep = [r for r in m.batches if r["epoch"] <= epoch] + [r for r in m.epochs if r["epoch"] <= epoch]
        keep.sort(key=lambda r: (r["epoch"], r["type"] == "epoch", r.get("step", 0)))
        tmp = self.path / ".metrics.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in keep))
        os.replace(tmp, self.path / "metrics.jsonl")

    # ------------------------------------------------------------------ stop request
    def request_stop(self) -> None:
        self._writable()
        (self.path / "stop").touch()

    def stop_requested(self) -> bool:
        return (self.path / "stop").exists()

    def clear_stop(self) -> None:
        (self.path / "stop").unlink(missing_ok=True)

    # ------------------------------------------------------------------ predictions
    def save_predictions(self, probs: np.ndarray, labels: np.ndarray, fingerprint: str) -> None:
        """Store test-set probabilities (N, 10) as float16, the predicted class (N,) (the argmax of
        the full-precision ``probs``) and labels (N,) int64, atomically."""
        self._writable()
        tmp = self.path / ".predictions.tmp.npz"
        np.savez_compressed(tmp, probs=probs.astype(np.float16), preds=probs.argmax(1).astype(np.uint8),
                            labels=labels.astype(np.int64), fingerprint=np.array(fingerprint))
        os.replace(tmp, self.predictions_path)

    def load_predictions(self) -> dict | None:
        """``{"probs": (N,10) float32, "preds": (N,) int64, "labels": (N,), "fingerprint": str}``
        or None."""
        try:
            with np.load(self.predictions_path) as z:
                probs = z["probs"].astype(np.float32)
                preds = z["preds"] if "preds" in z.files else probs.argmax(1)  # files before preds
                return {"probs": probs, "preds": preds.astype(np.int64), "labels": z["labels"],
                        "fingerprint": str(z["fingerprint"])}
        except (OSError, KeyError, ValueError):
            return None

    # ------------------------------------------------------------------ summary
    def summary(self) -> dict:
        """One row for run tables: id, label, norm, status, epoch x/y, best accuracy, params..."""
        st = self.status()
        try:
            s = self.settings()
            settings_ok = True
        except (ValueError, TypeError):
            s, settings_ok = TrainSettings(), False
        epochs = self.metrics().epochs
        best = max(epochs, key=lambda r: r["test_acc"], default=None)
        return {
            "id": self.id,
            "label": st.get("label") or self.id,
            "reference": self.reference,
            "norm": s.norm if settings_ok else "?",
            "status": st.get("state", "unknown"),
            "epoch": len(epochs),
            "epochs": s.epochs,
            "best_test_acc": best["test_acc"] if best else None,
            "best_epoch": best["epoch"] if best else None,
            "final_test_acc": epochs[-1]["test_acc"] if epochs else None,
            "params": st.get("params"),
            "seconds": sum(r["seconds"] for r in epochs),
            "created": st.get("created"),
            "error": st.get("error"),
        }


class RunStore:
    """All runs under ``root`` plus the shipped reference runs.

    Args:
        root: the user's runs directory (created on first write); default ``default_runs_dir()``.
        reference_root: folder of read-only reference runs; None hides them; default
            ``default_reference_root()``.
    """

    def __init__(self, root: Path | str | None = None,
                 reference_root: Path | None | str = "default") -> None:
        self.root = Path(root) if root is not None else default_runs_dir()
        self.reference_root = default_reference_root() if reference_root == "default" else reference_root

    def create(self, settings: TrainSettings, label: str | None = None) -> Run:
        """New queued run with a generated id; ``settings`` are validated and stored."""
        settings.validate()
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{settings.norm}-{secrets.token_hex(2)}"
            path = self.root / run_id
            try:
                path.mkdir()
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover
            raise RuntimeError("could not allocate a run id")
        run = Run(path)
        write_json_atomic(path / "settings.json", settings.to_dict())
        run.update_status(state="queued", label=(label or "").strip()[:80] or None,
                          created=time.time(), heartbeat=time.time(), pid=None,
                          params=settings.param_count())
        return run

    def get(self, run_id: str) -> Run:
        """The run with this id (user runs first, then reference runs); ``RunNotFound`` otherwise."""
        if not isinstance(run_id, str) or not _ID_RE.match(run_id):
            raise RunNotFound(run_id)
        if (self.root / run_id / "settings.json").is_file():
            return Run(self.root / run_id)
        if self.reference_root is not None and (self.reference_root / run_id / "settings.json").is_file():
            return Run(self.reference_root / run_id, reference=True)
        raise RunNotFound(run_id)

    def list(self) -> list[Run]:
        """User runs, newest first, then reference runs in name order."""
        runs: list[Run] = []
        if self.root.is_dir():
            mine = [p for p in self.root.iterdir()
                    if _ID_RE.match(p.name) and (p / "settings.json").is_file()]
            runs += [Run(p) for p in sorted(mine, key=lambda p: p.name, reverse=True)]
        if self.reference_root is not None and self.reference_root.is_dir():
            refs = [p for p in self.reference_root.iterdir() if (p / "settings.json").is_file()]
            runs += [Run(p, reference=True) for p in sorted(refs)]
        return runs

    def rename(self, run_id: str, label: str) -> None:
        """Set a run's display label (the id never changes)."""
        label = label.strip()
        if not label:
            raise ValueError("label must not be empty")
        self.get(run_id).update_status(label=label[:80])

    def delete(self, run_id: str) -> None:
        """Delete a user run that is not training; reference runs and active runs refuse."""
        run = self.get(run_id)
        run._writable()
        if run.status().get("state") in ACTIVE_STATES:
            raise RuntimeError(f"{run_id} is still {run.status()['state']}: stop it first")
        shutil.rmtree(run.path)
