"""A run's model as ONNX, with the input normalization built in: float32 (N, 3, 32, 32) RGB in [0, 1]
-> logits (N, 10), dynamic batch; for use outside the lab."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from cifar_app.store.run import Run


class WithInputNormalization(nn.Module):
    """The network with its input standardization inside: RGB (N, 3, 32, 32) in [0, 1] -> logits."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean.float().view(1, 3, 1, 1))
        self.register_buffer("std", std.float().view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x - self.mean) / self.std)


def onnx_bytes(run: Run) -> bytes:
    """The run's model as ONNX bytes (see ``export_onnx``)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        return export_onnx(run, Path(tmp) / "model.onnx").read_bytes()


def export_onnx(run: Run, out: Path | str) -> Path:
    """The run's model as ONNX at ``out`` (a folder gets ``<run id>.onnx``): see ``model_to_onnx``."""
    from cifar_app.store.inference import load_model

    out = Path(out)
    if out.is_dir():
        out = out / f"{run.id}.onnx"
    loaded = load_model(run)
    return model_to_onnx(loaded.model, loaded.mean, loaded.std, out)


def model_to_onnx(model: nn.Module, mean: torch.Tensor, std: torch.Tensor, out: Path | str) -> Path:
    """``model`` (any normalization) with its input normalization as ONNX at ``out``: input
    ``image`` float32 (N, 3, 32, 32) RGB in [0, 1], output ``logits`` (N, 10), N dynamic. Opset 17."""
    wrapped = WithInputNormalization(model.eval(), mean, std).eval()
    torch.onnx.export(wrapped, torch.rand(2, 3, 32, 32), str(out), input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return Path(out)
