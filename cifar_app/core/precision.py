"""Training arithmetic: fp32, or bf16 autocast where the hardware has it.

``precision`` (a training setting) is ``fp32``, ``bf16`` or ``auto``; ``resolve`` turns it into what
a run uses on its device:

- CUDA: ``auto`` is bf16 autocast (the GPU results in the README were measured so).
- CPU: bf16 needs the CPU's bf16 instructions (``avx512_bf16`` or AMX, ``cpu_bf16``). ``auto`` picks it
  only where both hold: it is faster for that normalization on this machine (``speedup``: a short
  measurement of the training step, cached per machine in ``$XDG_CACHE_HOME/cifar_app``), and bf16
  training has been shown to score within the fp32 seed noise (``bf16_accurate``: the caller's
  stored verdict, ``store.results.bf16_accuracy_ok``; without one ``auto`` stays fp32).
- MPS: fp32.

Under autocast the convolutions run in bf16; BatchNorm, GroupNorm and LayerNorm take bf16 inputs but
keep fp32 parameters and running statistics and accumulate their statistics in fp32 (PyTorch's
mixed-type CPU kernels). Evaluation is always fp32, so a model scores the same everywhere. A bf16 run
is not bit-reproducible against an fp32 one.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import torch

PRECISIONS = ("auto", "fp32", "bf16")
FASTER_BY = 1.05  # bf16 must beat fp32 by 5% in the cached measurement for auto to take it


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


@functools.cache
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX-512 BF16 or AMX)."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_info() -> dict:
    """What a run records about the CPU it trained on."""
    return {"cpu": cpu_model(), "cpu_bf16": cpu_bf16(),
            "cpu_flags": sorted(cpu_flags() & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2"})}


def _cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cifar_app" / "precision.json"


def _key(norm: str, arch: str, batch_size: int, threads: int) -> str:
    return f"{cpu_model()}|torch {torch.__version__}|{threads} threads|{norm}|{arch}|batch {batch_size}"


def memory_format(model: torch.nn.Module, device: torch.device, arithmetic: str) -> torch.memory_format:
    """The layout to train ``model`` in: channels_last (the faster convolutions), except on MPS, and
    except for bf16 on a CPU when a GroupNorm has more than one group: PyTorch's bf16 channels_last
    GroupNorm kernel is slow with few channels per group (at G = 4 it took 118 ms of a 273 ms step
    against 37 ms for BatchNorm; ``benchmarks/norm_profile.py``), and the contiguous layout is faster
    as a whole (208 ms) even though its convolutions are slower."""
    if device.type == "mps":
        return torch.contiguous_format
    if device.type == "cpu" and arithmetic == "bf16" and any(
            isinstance(m, torch.nn.GroupNorm) and m.num_groups > 1 for m in model.modules()):
        return torch.contiguous_format
    return torch.channels_last


def step_images_per_s(norm: str, arch: str, batch_size: int, bf16: bool, steps: int = 6) -> float:
    """Images/s of the training step (forward, backward, SGD) on random data, in the layout the
    engine trains in (``memory_format``), after two warm-up steps."""
    from cifar_app.core.model import build_model

    model = build_model(norm, arch=arch).train()
    fmt = memory_format(model, torch.device("cpu"), "bf16" if bf16 else "fp32")
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 3, 32, 32).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch_size,))
    t0 = 0.0
    for i in range(steps + 2):
        if i == 2:
            t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch_size / (time.perf_counter() - t0)


def speedup(norm: str, arch: str = "plain", batch_size: int = 128, measure: bool = True) -> float | None:
    """bf16 over fp32 images/s of the training step for this machine, norm, arch, batch and thread
    count; measured once (a few seconds) and cached. None without bf16 instructions, or when not
    cached and ``measure`` is False."""
    if not cpu_bf16():
        return None
    key = _key(norm, arch, batch_size, torch.get_num_threads())
    path = _cache_path()
    try:
        cache = json.loads(path.read_text())
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    if key in cache and isinstance(cache[key], (int, float)):
        return float(cache[key])
    if not measure:
        return None
    fp32 = max(step_images_per_s(norm, arch, batch_size, False) for _ in range(2))
    bf16 = max(step_images_per_s(norm, arch, batch_size, True) for _ in range(2))
    cache[key] = round(bf16 / fp32, 3)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # an unwritable cache only means measuring again next time
    return cache[key]


def resolve(precision: str, device: torch.device, norm: str, arch: str = "plain",
            batch_size: int = 128,
            bf16_accurate: Callable[[], bool | None] = lambda: None) -> tuple[str, str]:
    """(``fp32`` or ``bf16``, why) for a run on ``device``. ``bf16_accurate``: whether bf16 training
    has been shown to score as fp32 does (None: not shown), which ``auto`` needs on a CPU; asked only
    there (``store.results.resolve_precision`` passes the stored verdict)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device.type == "cuda":
        if precision == "fp32":
            return "fp32", "asked for"
        return "bf16", "asked for" if precision == "bf16" else "auto: bf16 autocast on a GPU"
    if device.type != "cpu":
        return "fp32", f"{device.type}: fp32 only"
    if precision == "fp32":
        return "fp32", "asked for"
    if not cpu_bf16():
        if precision == "bf16":
            raise RuntimeError("precision bf16 was asked for but this CPU has no bf16 instructions "
                               "(avx512_bf16 or AMX); use fp32 or auto")
        return "fp32", "auto: this CPU has no bf16 instructions"
    if precision == "bf16":
        return "bf16", "asked for"
    ok = bf16_accurate()
    if not ok:
        return "fp32", ("auto: bf16 has not been shown to match fp32's accuracy yet" if ok is None
                        else "auto: bf16 training scored below fp32 beyond the seed noise")
    gain = speedup(norm, arch, batch_size)
    if gain is None or gain < FASTER_BY:
        return "fp32", f"auto: bf16 is not faster for {norm} here ({gain or 0:.2f}x)"
    return "bf16", f"auto: bf16 is {gain:.2f}x faster for {norm} here"
