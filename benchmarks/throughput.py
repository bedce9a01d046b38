"""Training throughput: the engine (fp32, and bf16 where the CPU has it) vs a plain DataLoader loop
with per-sample PIL transforms, beside the machine's measured matmul peaks.

    python benchmarks/throughput.py --data PATH [--batches 100] [--repeats 3] [--norms batch,group,layer,none]

Both train the same model for the same number of batches on the same images:
- engine: ``cifar_app.core.engine.train`` (uint8 tensors in memory, augmentation on whole batches,
  channels_last);
- plain: ``torch.utils.data.DataLoader`` over a dataset that, like torchvision's ``CIFAR10``, turns
  each image into a PIL image and applies ``RandomCrop(32, 4)``, ``RandomHorizontalFlip``,
  ``ToTensor`` and ``Normalize`` per sample (the seed notebooks' pipeline), ``num_workers`` =
  CPU cores, NCHW model.
Each is measured ``--repeats`` times, alternating, and the median is kept (a shared 2-core VM is noisy).
The engine runs in fp32 and, on a CPU with bf16 instructions (avx512_bf16 or AMX), with
``precision=bf16``. The matmul peaks (2048² x 2048², fp32 and bf16, this many threads) say how close
the engine is to the machine: at 72.9 MFLOP per training image (forward + backward), GFLOP/s =
images/s x 0.0729. Prints images/s of each and the ratios; ``--json FILE`` also writes them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

from cifar_app.core.data import channel_stats, load_cifar10
from cifar_app.core.engine import make_optimizer, train
from cifar_app.core.model import build_model
from cifar_app.core.settings import TrainSettings


class PilDataset(torch.utils.data.Dataset):
    """Per-sample PIL pipeline, as torchvision's CIFAR10 + the seed's transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform  # images (N, 32, 32, 3)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def plain_images_per_s(data, settings: TrainSettings, batches: int, warmup: int = 3) -> float:
    mean, std = channel_stats(data.train_x)
    tf = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(mean.tolist(), std.tolist())])
    n = (batches + warmup) * settings.batch_size
    ds = PilDataset(data.train_x[:n].permute(0, 2, 3, 1).numpy(), data.train_y[:n].numpy(), tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=settings.batch_size, shuffle=True,
                                         num_workers=os.cpu_count() or 2, drop_last=True,
                                         persistent_workers=False)
    model = build_model(settings.norm, settings.groups, settings.dropout, settings.arch)
    model.train()
    opt = make_optimizer(model, settings)
    start = None
    seen = 0
    for i, (x, y) in enumerate(loader):
        if i == warmup:
            start = time.perf_counter()
        loss = F.cross_entropy(model(x), y, label_smoothing=settings.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            seen += len(y)
    return seen / (time.perf_counter() - start)


def engine_images_per_s(data, settings: TrainSettings, batches: int) -> float:
    """Second of two epochs of ``batches`` batches (the first warms up), training part only."""
    s = TrainSettings(**{**settings.to_dict(), "epochs": 2,
                         "train_limit": batches * settings.batch_size, "test_limit": 100})
    return train(s, data).history[-1].images_per_s


FLOP_PER_IMAGE = 72.9e6  # forward + backward of the plain model, per training image


def matmul_gflops(dtype: torch.dtype, n: int = 2048, repeats: int = 5) -> float:
    """Best of ``repeats`` n x n matmuls, in GFLOP/s."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=None)
    p.add_argument("--batches", type=int, default=100)
    p.add_argument("--repeats", type=int, default=3, help="measure each this many times; keep the median")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--norms", default="batch,group,layer,none")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    data = load_cifar10(args.data)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"{args.batches} batches of {args.batch_size}, median of {args.repeats}")
    from cifar_app.core.precision import cpu_bf16, cpu_info

    peaks = {"fp32": matmul_gflops(torch.float32)}
    if cpu_bf16():
        peaks["bf16"] = matmul_gflops(torch.bfloat16)
    print("matmul peaks: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peaks.items()), flush=True)
    precisions = ["fp32", "bf16"] if cpu_bf16() else ["fp32"]
    rows = []
    for norm in args.norms.split(","):
        runs: dict[str, list[float]] = {p: [] for p in [*precisions, "plain"]}
        for _ in range(args.repeats):
            for prec in precisions:
                s = TrainSettings(norm=norm, batch_size=args.batch_size, device="cpu", precision=prec)
                runs[prec].append(engine_images_per_s(data, s, args.batches))
            plain = TrainSettings(norm=norm, batch_size=args.batch_size)
            runs["plain"].append(plain_images_per_s(data, plain, args.batches))
        med = {k: statistics.median(v) for k, v in runs.items()}
        row = {"norm": norm, "engine_images_per_s": med["fp32"], "plain_images_per_s": med["plain"],
               "speedup": med["fp32"] / med["plain"], "engine_runs": runs["fp32"],
               "plain_runs": runs["plain"],
               "engine_gflops": med["fp32"] * FLOP_PER_IMAGE / 1e9}
        line = (f"{norm:>6}: plain DataLoader {med['plain']:6.0f} img/s | engine fp32 "
                f"{med['fp32']:6.0f} img/s x{med['fp32'] / med['plain']:.2f} "
                f"({row['engine_gflops']:.0f} GFLOP/s)")
        if "bf16" in med:
            row |= {"bf16_images_per_s": med["bf16"], "bf16_speedup": med["bf16"] / med["plain"],
                    "bf16_over_fp32": med["bf16"] / med["fp32"], "bf16_runs": runs["bf16"],
                    "bf16_gflops": med["bf16"] * FLOP_PER_IMAGE / 1e9}
            line += (f" | engine bf16 {med['bf16']:6.0f} img/s x{med['bf16'] / med['plain']:.2f} "
                     f"({row['bf16_gflops']:.0f} GFLOP/s, {med['bf16'] / med['fp32']:.2f}x fp32)")
        rows.append(row)
        print(line, flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                                               "cpu": cpu_info(), "matmul_gflops": peaks, "rows": rows},
                                              indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
