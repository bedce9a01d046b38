"""Where a training step's time goes, per normalization and arithmetic (fp32 / bf16 autocast), on
the CPU: ``torch.profiler`` over the engine's step (the model, channels_last, SGD), batch 128.

    python benchmarks/norm_profile.py [--threads 1] [--steps 5] [--norms batch,group,layer] [--json FILE]
                                      [--budget benchmarks/results/throughput_bf16.json]

For each (norm, arithmetic, memory format) it prints the step time and where it goes: the
convolutions' forward and backward, the norm layers (forward + backward), the rest (ReLU, pooling,
the loss, SGD). Beside it, ``prep``: the engine's batch preparation (normalize + crop + flip of a
uint8 batch), timed without the profiler. It answers why bf16 speeds some norms up and not others:
the question of issue 19. With ``--budget`` (a ``throughput.py --json`` file) it also prints the
step time that would make the engine 3x that file's seed-style loop, per norm: 128 / (3 x its
images/s) minus prep. Synthetic images (the step's cost does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from cifar_app.core.model import build_model
from cifar_app.core.precision import cpu_model

KINDS = {"conv_bwd": ("convolution_backward",), "conv": ("convolution",),
         "norm": ("batch_norm", "group_norm", "layer_norm")}  # first match wins


def kind(key: str) -> str:
    return next((k for k, words in KINDS.items() if any(w in key for w in words)), "rest")


def prep_ms(batches: int = 40) -> float:
    """The engine's batch preparation (``engine.normalize`` + ``augment.augment_batch``, crop 4 and
    flip) of a uint8 batch of 128, median ms over ``batches``."""
    from cifar_app.core.augment import augment_batch
    from cifar_app.core.engine import normalize

    x = torch.randint(0, 256, (128, 3, 32, 32), dtype=torch.uint8)
    mean, std = torch.full((3,), 0.47), torch.full((3,), 0.25)
    gen = torch.Generator().manual_seed(0)
    times = []
    for _ in range(batches):
        t = time.perf_counter()
        augment_batch(normalize(x, mean, std), crop_pad=4, flip=True, generator=gen).contiguous(
            memory_format=torch.channels_last)
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def profile_step(norm: str, arithmetic: str, channels_last: bool, steps: int) -> dict:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    torch.manual_seed(0)
    x = torch.randn(128, 3, 32, 32).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (128,))
    model = build_model(norm).to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=arithmetic == "bf16"):
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    shares = {k: 0.0 for k in [*KINDS, "rest"]}
    for e in events:
        shares[kind(e.key)] += e.self_cpu_time_total
    return {"norm": norm, "arithmetic": arithmetic, "format": "channels_last" if channels_last else
            "contiguous", "ms_per_step": round(total / steps / 1000, 1),
            **{f"{k}_ms": round(v / steps / 1000, 1) for k, v in shares.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--norms", default="batch,group,layer")
    p.add_argument("--json")
    p.add_argument("--budget", help="a throughput.py --json file: print the step time 3x its seed loop needs")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [profile_step(n, a, cl, args.steps) for n in args.norms.split(",")
            for a, cl in (("fp32", True), ("bf16", True), ("bf16", False))]
    prep = round(prep_ms(), 1)
    print(f"{args.threads} thread(s); batch preparation {prep} ms")
    print(f"{'norm':8} {'arith':5} {'format':13} {'ms/step':>8} {'conv fwd':>8} {'conv bwd':>8} "
          f"{'norm':>7} {'rest':>7}")
    for r in rows:
        print(f"{r['norm']:8} {r['arithmetic']:5} {r['format']:13} {r['ms_per_step']:8.1f} "
              f"{r['conv_ms']:8.1f} {r['conv_bwd_ms']:8.1f} {r['norm_ms']:7.1f} {r['rest_ms']:7.1f}")
    budget = {}
    if args.budget:
        plain = {r["norm"]: r["plain_images_per_s"] for r in json.loads(open(args.budget).read())["rows"]}
        for norm in args.norms.split(","):
            if norm in plain:
                budget[norm] = round(128 / (3 * plain[norm]) * 1000 - prep, 1)
                print(f"3x the seed loop ({plain[norm]:.0f} img/s) for {norm}: a step of at most "
                      f"{budget[norm]} ms (+ {prep} ms preparation)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "steps": args.steps, "torch": torch.__version__,
                       "cpu": cpu_model(), "machine": platform.machine(), "prep_ms": prep,
                       "budget_ms": budget, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
