"""Where a training step's time goes, per normalization and arithmetic (fp32 / bf16 autocast), on
the CPU: ``torch.profiler`` over the engine's step (the model, channels_last, SGD), batch 128.

    python benchmarks/norm_profile.py [--threads 1] [--steps 5] [--norms batch,group,layer] [--json FILE]

For each (norm, arithmetic, memory format) it prints the step time and the share of the three
kinds of work: convolutions (forward + backward), the norm layers (forward + backward), the rest.
It answers why bf16 speeds some norms up and not others: the question of issue 19. Synthetic
images (the step's cost does not depend on the pixels).
"""

from __future__ import annotations

import argparse
import json
import platform

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from cifar_app.model import build_model
from cifar_app.precision import cpu_model

KINDS = {"conv": ("convolution",), "norm": ("batch_norm", "group_norm", "layer_norm")}


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
    shares = {k: sum(e.self_cpu_time_total for e in events if any(w in e.key for w in words))
              for k, words in KINDS.items()}
    shares["rest"] = total - sum(shares.values())
    return {"norm": norm, "arithmetic": arithmetic, "format": "channels_last" if channels_last else
            "contiguous", "ms_per_step": round(total / steps / 1000, 1),
            **{f"{k}_ms": round(v / steps / 1000, 1) for k, v in shares.items()}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--norms", default="batch,group,layer")
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [profile_step(n, a, cl, args.steps) for n in args.norms.split(",")
            for a, cl in (("fp32", True), ("bf16", True), ("bf16", False))]
    print(f"{'norm':8} {'arith':5} {'format':13} {'ms/step':>8} {'conv':>7} {'norm':>7} {'rest':>7}")
    for r in rows:
        print(f"{r['norm']:8} {r['arithmetic']:5} {r['format']:13} {r['ms_per_step']:8.1f} "
              f"{r['conv_ms']:7.1f} {r['norm_ms']:7.1f} {r['rest_ms']:7.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "steps": args.steps, "torch": torch.__version__,
                       "cpu": cpu_model(), "machine": platform.machine(), "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
