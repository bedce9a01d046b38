"""Training throughput: the engine vs a plain DataLoader loop with per-sample PIL transforms.

    python benchmarks/throughput.py --data PATH [--batches 100] [--repeats 3] [--norms batch,group,layer,none]

Both train the same model for the same number of batches on the same images:
- engine: ``cifar_app.engine.train`` (uint8 tensors in memory, augmentation on whole batches,
  channels_last);
- plain: ``torch.utils.data.DataLoader`` over a dataset that, like torchvision's ``CIFAR10``, turns
  each image into a PIL image and applies ``RandomCrop(32, 4)``, ``RandomHorizontalFlip``,
  ``ToTensor`` and ``Normalize`` per sample (the seed notebooks' pipeline), ``num_workers`` =
  CPU cores, NCHW model.
Each is measured ``--repeats`` times, alternating, and the median is kept (a shared 2-core VM is noisy).
Prints images/s of each and the ratio; ``--json FILE`` also writes them.
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

from cifar_app.data import channel_stats, load_cifar10
from cifar_app.engine import make_optimizer, train
from cifar_app.model import build_model
from cifar_app.settings import TrainSettings


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
    rows = []
    for norm in args.norms.split(","):
        s = TrainSettings(norm=norm, batch_size=args.batch_size, device="cpu")
        engine, plain = [], []
        for _ in range(args.repeats):
            engine.append(engine_images_per_s(data, s, args.batches))
            plain.append(plain_images_per_s(data, s, args.batches))
        engine_ips, plain_ips = statistics.median(engine), statistics.median(plain)
        rows.append({"norm": norm, "engine_images_per_s": engine_ips, "plain_images_per_s": plain_ips,
                     "speedup": engine_ips / plain_ips, "engine_runs": engine, "plain_runs": plain})
        print(f"{norm:>6}: engine {engine_ips:7.0f} img/s   plain DataLoader {plain_ips:7.0f} img/s   "
              f"x{engine_ips / plain_ips:.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
