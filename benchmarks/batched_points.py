"""Batched points (issue 19): do K points of a sweep train faster as one stacked model than as
separate runs? On the CPU, here: the training step of K copies of the model (different seeds)
stacked with ``torch.func.stack_module_state`` and run under ``vmap``, against the same K steps
run one after another at the same threads, and against the local backend's way (K processes of
one thread each at once, K = the cores).

    python benchmarks/batched_points.py [--k 2] [--norms batch,layer] [--precision fp32,bf16]
                                        [--steps 10] [--json FILE]

Prints images/s summed over the K models, median of 3, batch 128, synthetic images (a step's cost
does not depend on the pixels). BatchNorm keeps per-model statistics: its running buffers are
stacked with the weights, so each model normalizes by its own batch.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing as mp
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state

from cifar_app.core.model import build_model

BATCH = 128


def _autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)


def _batch(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, 3, 32, 32, generator=g).contiguous(memory_format=torch.channels_last)
    return x, torch.randint(0, 10, (BATCH,), generator=g)


def separate(norm: str, k: int, bf16: bool, steps: int) -> float:
    """K models stepped one after another (images/s over all K)."""
    models = []
    for i in range(k):
        torch.manual_seed(i)
        m = build_model(norm).to(memory_format=torch.channels_last).train()
        models.append((m, torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, nesterov=True), _batch(i)))

    def step():
        for m, opt, (x, y) in models:
            with _autocast(bf16):
                loss = F.cross_entropy(m(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return _time(step, steps, k)


def stacked(norm: str, k: int, bf16: bool, steps: int) -> float:
    """K models as one: weights and buffers stacked, the forward vmapped (images/s over all K)."""
    models = []
    for i in range(k):
        torch.manual_seed(i)
        models.append(build_model(norm).to(memory_format=torch.channels_last).train())
    params, buffers = stack_module_state(models)
    params = {n: p.detach().requires_grad_() for n, p in params.items()}
    base = copy.deepcopy(models[0]).to("meta")
    opt = torch.optim.SGD(params.values(), lr=0.01, momentum=0.9, nesterov=True)
    xs, ys = zip(*(_batch(i) for i in range(k)))
    x, y = torch.stack(xs), torch.stack(ys)

    def one(p, b, xi):
        return functional_call(base, (p, b), (xi,))

    def step():
        with _autocast(bf16):
            logits = torch.vmap(one, randomness="different")(params, buffers, x)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum") / BATCH
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return _time(step, steps, k)


def _time(step, steps: int, k: int) -> float:
    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * k * BATCH / (time.perf_counter() - t)


def _one_process(args) -> float:
    norm, bf16, steps, start = args
    torch.set_num_threads(1)
    start.wait()
    return separate(norm, 1, bf16, steps)


def processes(norm: str, k: int, bf16: bool, steps: int) -> float:
    """K processes of one thread, each its own model, at once (the local backend's pairing)."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as mgr:
        start = mgr.Barrier(k)
        with ctx.Pool(k) as pool:
            return sum(pool.map(_one_process, [(norm, bf16, steps, start)] * k))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--norms", default="batch,layer")
    p.add_argument("--precision", default="fp32,bf16")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json")
    args = p.parse_args(argv)
    threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, {os.cpu_count()} CPUs; K = {args.k}, "
          f"images/s summed over the K models, median of {args.repeats}")
    rows = []
    for norm in args.norms.split(","):
        for prec in args.precision.split(","):
            bf16 = prec == "bf16"
            runs: dict[str, list[float]] = {"separate": [], "stacked": [], "processes": []}
            for _ in range(args.repeats):
                runs["separate"].append(separate(norm, args.k, bf16, args.steps))
                runs["stacked"].append(stacked(norm, args.k, bf16, args.steps))
                runs["processes"].append(processes(norm, args.k, bf16, args.steps))
            med = {k: statistics.median(v) for k, v in runs.items()}
            rows.append({"norm": norm, "precision": prec, **{f"{k}_images_per_s": v for k, v in med.items()},
                         "runs": runs})
            print(f"{norm:6} {prec}: one after another {med['separate']:6.0f} | stacked (vmap) "
                  f"{med['stacked']:6.0f} ({med['stacked'] / med['separate']:.2f}x) | {args.k} processes "
                  f"of 1 thread {med['processes']:6.0f} ({med['processes'] / med['separate']:.2f}x)",
                  flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "threads": threads, "k": args.k, "steps": args.steps,
                       "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
