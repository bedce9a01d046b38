"""Batch dependence at inference: does a model's answer depend on which images share its batch?

For a trained run, test accuracy is computed three ways:

(a) eval mode: normalization layers use their stored (running) statistics;
(b) train-mode statistics: each normalization layer normalizes with the statistics of the test batch
    itself, at test batch sizes 1, 2, 8, 32, 128 and 1000 (dropout stays off, and no stored
    statistic is changed);
(c) PreciseBN: BatchNorm's population statistics recomputed over N training images (no augmentation)
    with ``torch.optim.swa_utils.update_bn``, then eval mode.

GroupNorm, LayerNorm and no norm compute their statistics per image, so (a), (b) at every batch size
and (c) agree up to float rounding; BatchNorm's do not.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from cifar_app.core import norms
from cifar_app.core.data import CifarData
from cifar_app.core.engine import normalize
from cifar_app.lab.batchdep_record import (  # noqa: F401  (the record, re-exported)
    PRECISE_BN_IMAGES,
    TEST_BATCH_SIZES,
    BatchDependence,
    batchdep_row,
)
from cifar_app.store.inference import LoadedModel


def _uses_batch_statistics(model: nn.Module) -> bool:
    """Whether the model's normalization normalizes with the batch's statistics (the registry says)."""
    return norms.get(getattr(model, "norm", "none")).batch_statistics


def _with_batch_statistics(model: nn.Module) -> nn.Module:
    """A copy whose normalization layers use the batch's own statistics, changing nothing stored
    (per-image norms already do, in both modes)."""
    m = copy.deepcopy(model).eval()
    if _uses_batch_statistics(m):
        for block in m.blocks().values():
            layer = block.norm_layer
            layer.train()
            layer.track_running_stats = False  # use batch statistics, update no running buffers
            layer.running_mean, layer.running_var = None, None
    return m


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
             batch_size: int) -> torch.Tensor:
    preds = []
    for i in range(0, len(x), batch_size):
        xb = normalize(x[i:i + batch_size], mean, std).contiguous(memory_format=torch.channels_last)
        preds.append(model(xb).argmax(1))
    return torch.cat(preds)


def batch_dependence(loaded: LoadedModel, data: CifarData, test_limit: int | None = None,
                     batch_sizes: tuple[int, ...] = TEST_BATCH_SIZES,
                     precise_images: int = PRECISE_BN_IMAGES) -> BatchDependence:
    """Measure (a), (b) and (c) of the module docstring on the first ``test_limit`` test images."""
    x, y = data.test_x[:test_limit], data.test_y[:test_limit]
    model = loaded.model.eval()
    eval_preds = _predict(model, x, loaded.mean, loaded.std, 1000)
    batch_model = _with_batch_statistics(model)
    accs, differ = {}, {}
    for k in batch_sizes:
        preds = _predict(batch_model, x, loaded.mean, loaded.std, k)
        accs[k] = float((preds == y).float().mean())
        differ[k] = int((preds != eval_preds).sum())
    precise = None
    n_precise = 0
    if _uses_batch_statistics(model):
        precise_model = copy.deepcopy(model)
        n_precise = min(precise_images, len(data.train_x))
        batches = [normalize(data.train_x[i:i + 128], loaded.mean, loaded.std)
                   .contiguous(memory_format=torch.channels_last) for i in range(0, n_precise, 128)]
        torch.optim.swa_utils.update_bn(batches, precise_model)
        precise_model.eval()
        precise = float((_predict(precise_model, x, loaded.mean, loaded.std, 1000) == y).float().mean())
    return BatchDependence(len(y), float((eval_preds == y).float().mean()), accs, differ, precise,
                           n_precise)


@torch.no_grad()
def alone_and_in_batch(loaded: LoadedModel, image32, others: torch.Tensor) -> dict[str, torch.Tensor]:
    """Class probabilities (10,) for one uint8 (32, 32, 3) image three ways: eval mode; normalized
    with batch statistics alone (a batch of one); and inside a batch with ``others`` (uint8
    (N, 3, 32, 32), e.g. test images). Identical for per-image norms; BatchNorm's differ."""
    x1 = torch.as_tensor(np.array(image32, dtype=np.uint8)).permute(2, 0, 1)[None]
    batch = torch.cat([x1, others.to(x1.dtype)])
    model = _with_batch_statistics(loaded.model)

    def probs(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
        xb = normalize(x, loaded.mean, loaded.std).contiguous(memory_format=torch.channels_last)
        return m(xb).float().softmax(1)[0]

    return {"eval mode": probs(loaded.model.eval(), x1), "alone": probs(model, x1),
            f"in a batch of {len(batch)}": probs(model, batch)}
