"""The record of a batch-dependence measurement (``lab.batchdep``), without torch: the Inside page
and the claims read it from a run's results and draw it; only measuring needs a network."""

from __future__ import annotations

from dataclasses import asdict, dataclass

TEST_BATCH_SIZES = (1, 2, 8, 32, 128, 1000)
PRECISE_BN_IMAGES = 10_000


@dataclass
class BatchDependence:
    """Accuracies (0..1) on ``n_test`` test images; ``batch_stats[k]`` at test batch size k;
    ``preds_eval`` etc. are not kept, only how many predictions differ from eval mode."""

    n_test: int
    eval_acc: float
    batch_stats: dict[int, float]
    differ_from_eval: dict[int, int]   # images whose predicted class differs from eval mode
    precise_bn_acc: float | None       # None for models without BatchNorm
    precise_bn_images: int

    def to_dict(self) -> dict:
        d = asdict(self)
        d["batch_stats"] = {str(k): v for k, v in self.batch_stats.items()}
        d["differ_from_eval"] = {str(k): v for k, v in self.differ_from_eval.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> BatchDependence:
        d = dict(d)
        d["batch_stats"] = {int(k): float(v) for k, v in d["batch_stats"].items()}
        d["differ_from_eval"] = {int(k): int(v) for k, v in d["differ_from_eval"].items()}
        return cls(**d)


def batchdep_row(label: str, r: BatchDependence) -> dict:
    """One table row: accuracies in % for eval mode, each test batch size and PreciseBN."""
    row = {"run": label, "test images": r.n_test, "eval mode (%)": round(100 * r.eval_acc, 2)}
    for k, acc in sorted(r.batch_stats.items()):
        row[f"batch {k} (%)"] = round(100 * acc, 2)
    row["PreciseBN (%)"] = None if r.precise_bn_acc is None else round(100 * r.precise_bn_acc, 2)
    return row
