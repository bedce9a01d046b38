"""Per-step series for charts: smoothing and decimation (pure numpy, no plotting)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_POINTS = 2000  # per trace; a 20-epoch run at batch size 16 logs 62,500 steps


def smooth(values: Sequence[float], weight: float) -> np.ndarray:
    """Exponential moving average (TensorBoard style, bias-corrected); weight in [0, 1).

    values: (N,) -> (N,) float64."""
    out = np.empty(len(values))
    avg, norm = 0.0, 0.0
    for i, v in enumerate(values):
        avg = weight * avg + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = avg / norm
    return out


def decimate(x: Sequence[float], y: Sequence[float], max_points: int = MAX_POINTS
             ) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` of the points (x[i], y[i]), in order, chosen so that a line chart looks
    the same: the series is cut into ``max_points // 4`` runs of consecutive points and each run keeps
    its first, last, lowest and highest point (the M4 rule). The whole series' first, last, min and
    max points are always kept; a series that fits is returned whole. x, y: (N,) -> two (M,) arrays."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got {xs.shape} and {ys.shape}")
    n = len(xs)
    if max_points < 4:
        raise ValueError(f"max_points must be at least 4, got {max_points}")
    if n <= max_points:
        return xs, ys
    buckets = max_points // 4
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    starts, ends = edges[:-1], edges[1:] - 1
    # per bucket argmin/argmax: pad the buckets to one width and mask the padding
    width = int((ends - starts).max()) + 1
    idx = starts[:, None] + np.arange(width)[None, :]
    valid = idx <= ends[:, None]
    idx = np.minimum(idx, n - 1)
    rows = np.arange(buckets)
    lo = idx[rows, np.argmin(np.where(valid, ys[idx], np.inf), axis=1)]   # a NaN (diverged) wins
    hi = idx[rows, np.argmax(np.where(valid, ys[idx], -np.inf), axis=1)]
    keep = np.unique(np.concatenate([starts, ends, lo, hi]))
    return xs[keep], ys[keep]
