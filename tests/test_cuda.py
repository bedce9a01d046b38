"""The engine on a CUDA GPU: runs when one is present, skipped with the reason otherwise.

Everything a run does on the GPU that a CPU run cannot show: bf16 autocast there, the per-layer
probe (``torch.quantile`` once crashed on CUDA), the loss-landscape probes restoring GPU RNG state,
the weight average, scoring in fp32 the same as on the CPU, and a run recorded through the store.
"""

from __future__ import annotations

import pytest
import torch

from cifar_app.core.engine import Hooks, predict_probs, train
from cifar_app.core.settings import TrainSettings
from cifar_app.store.jobs import execute_run
from cifar_app.store.runstore import RunStore
from tests.conftest import synthetic_data

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")

QUICK = dict(epochs=2, batch_size=64, max_lr=0.05, device="cuda")


@pytest.mark.parametrize("norm", ["batch", "group", "layer", "none"])
def test_a_gpu_run_trains_in_bf16_with_every_probe(norm):
    inside, landscape = [], []
    result = train(TrainSettings(norm=norm, landscape=3, ema=0.9, **QUICK), synthetic_data(256, 64),
                   Hooks(on_probe=inside.append, on_landscape=landscape.append))
    assert result.arithmetic == "bf16" and not result.stopped
    assert len(inside) == 3 and len(landscape) == 3  # at init and after each epoch; 3 probe steps
    assert all(torch.isfinite(torch.tensor(h.train_loss)) for h in result.history)
    assert next(result.model.parameters()).is_cuda and next(result.model.parameters()).dtype == torch.float32


def test_a_gpu_model_scores_as_it_does_on_the_cpu():
    data = synthetic_data(256, 64)
    result = train(TrainSettings(norm="batch", **QUICK), data)
    on_gpu = predict_probs(result.model, data.test_x, result.mean, result.std, torch.device("cuda"))
    on_cpu = predict_probs(result.model.cpu(), data.test_x, result.mean, result.std, torch.device("cpu"))
    assert torch.allclose(on_gpu, on_cpu, atol=1e-4)


def test_a_gpu_run_is_recorded_through_the_store(tmp_path):
    store = RunStore(tmp_path / "runs", reference_root=None)
    run = store.create(TrainSettings(norm="group", **QUICK))
    execute_run(store, run.id, data=synthetic_data(256, 64))
    status = run.status()
    assert run.state() == "completed"
    assert status["precision"] == "bf16" and status["device"] == "cuda"
