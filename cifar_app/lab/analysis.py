"""Test-set analysis of a run: evaluation, confusion matrix, per-class accuracy, misclassified list."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cifar_app.core.data import CifarData
from cifar_app.core.engine import predict_probs
from cifar_app.store.inference import LoadedModel, load_model
from cifar_app.store.run import Run


@dataclass
class Evaluation:
    """A model scored on a test set. ``probs``: float32 (N, 10); ``labels``: int64 (N,);
    ``preds``: int64 (N,) predicted classes, given when known exactly (stored probabilities are
    float16, whose rounding can turn a near-tie into a false tie), else the argmax of ``probs``."""

    probs: np.ndarray
    labels: np.ndarray
    preds: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.preds is None:
            self.preds = self.probs.argmax(1)

    @property
    def accuracy(self) -> float:
        """Fraction correct, 0..1."""
        return float((self.preds == self.labels).mean()) if len(self.labels) else float("nan")

    @property
    def loss(self) -> float:
        """Mean cross-entropy (nats)."""
        p = self.probs[np.arange(len(self.labels)), self.labels]
        return float(-np.log(np.clip(p, 1e-12, None)).mean()) if len(p) else float("nan")


def evaluate_model(loaded: LoadedModel, data: CifarData, test_limit: int | None = None,
                   flip_tta: bool = False) -> Evaluation:
    """Score a loaded model on the first ``test_limit`` test images (all when None); with
    ``flip_tta`` each image's prediction averages it and its mirror image."""
    x, y = data.test_x[:test_limit], data.test_y[:test_limit]
    probs = predict_probs(loaded.model, x, loaded.mean, loaded.std, torch.device("cpu"),
                          flip_tta=flip_tta)
    return Evaluation(probs.numpy(), y.numpy())


def run_evaluation(run: Run, data: CifarData | None = None) -> Evaluation:
    """The run's test predictions: the stored ones when they were made on this very test set
    (same fingerprint) or no data is given; otherwise computed now from the run's model."""
    stored = run.load_predictions()
    if stored is not None and (data is None or data.limit(test_limit=len(stored["labels"]))
                               .test_fingerprint == stored["fingerprint"]):
        return Evaluation(stored["probs"], stored["labels"], stored["preds"])
    if data is None:
        raise FileNotFoundError(f"run {run.id} has no stored test predictions; load the test set "
                                "to compute them")
    limit = run.settings().test_limit
    return evaluate_model(load_model(run), data, limit)


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """int64 (num_classes, num_classes): row = true class, column = predicted class."""
    return np.bincount(labels * num_classes + preds, minlength=num_classes ** 2).reshape(
        num_classes, num_classes)


def per_class_accuracy(labels: np.ndarray, preds: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """float (num_classes,): fraction of each true class predicted correctly (nan if absent)."""
    cm = confusion_matrix(labels, preds, num_classes)
    totals = cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)


@dataclass(frozen=True)
class Mistake:
    """One misclassified test image: its index in the test split, labels and confidence (0..1)."""

    index: int
    true: int
    pred: int
    confidence: float  # probability the model gave its (wrong) prediction
    true_prob: float   # probability it gave the true class


def misclassified(ev: Evaluation, true_class: int | None = None, pred_class: int | None = None,
                  most_confident_first: bool = True) -> list[Mistake]:
    """Misclassified images, optionally only of one true and/or predicted class, sorted by confidence."""
    preds = ev.preds
    mask = preds != ev.labels
    if true_class is not None:
        mask &= ev.labels == true_class
    if pred_class is not None:
        mask &= preds == pred_class
    idx = np.flatnonzero(mask)
    conf = ev.probs[idx, preds[idx]]
    order = np.argsort(-conf if most_confident_first else conf, kind="stable")
    return [Mistake(int(idx[i]), int(ev.labels[idx[i]]), int(preds[idx[i]]), float(conf[i]),
                    float(ev.probs[idx[i], ev.labels[idx[i]]])) for i in order]


@dataclass(frozen=True)
class Pattern:
    """One right/wrong pattern over several runs on the same test images: ``right[i]`` says
    whether run i is right; ``indices`` are the test images with that pattern."""

    right: tuple[bool, ...]
    indices: np.ndarray

    def describe(self, names: list[str]) -> str:
        """'all right', 'all wrong', or 'BN right; GN, LN wrong'."""
        if all(self.right):
            return "all right"
        if not any(self.right):
            return "all wrong"
        ok = [n for n, r in zip(names, self.right) if r]
        bad = [n for n, r in zip(names, self.right) if not r]
        return f"{', '.join(ok)} right; {', '.join(bad)} wrong"


def agreement_patterns(preds: list[np.ndarray], labels: np.ndarray) -> list[Pattern]:
    """Every right/wrong pattern of 2-4 runs' predicted classes (each (N,), same test images as
    ``labels``), most frequent first; patterns no image has are left out."""
    if not 2 <= len(preds) <= 4:
        raise ValueError("compare 2 to 4 runs")
    right = np.stack([p == labels for p in preds], axis=1)              # (N, k) bool
    codes = right.astype(np.int64) @ (1 << np.arange(len(preds)))        # one int per pattern
    out = []
    for code in np.unique(codes):
        pattern = tuple(bool(code >> i & 1) for i in range(len(preds)))
        out.append(Pattern(pattern, np.flatnonzero(codes == code)))
    return sorted(out, key=lambda p: -len(p.indices))
