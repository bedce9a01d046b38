"""Small batches waste a 2-core CPU: images/s per batch size, one 2-thread run vs two 1-thread runs.

    python benchmarks/sweep_parallelism.py --data PATH [--batch-sizes 2,4,8,16,32,128] [--seconds 20]

For each batch size, trains GroupNorm on real images for about ``--seconds`` seconds:
- "one x 2 threads": one process, ``torch.set_num_threads(2)``;
- "two x 1 thread": two processes at the same time, one thread each (their images/s added up).
Each is measured ``--repeats`` times, alternating; the median is kept. Writes
``benchmarks/results/sweep_parallelism.json``; the local sweep backend runs two 1-thread points at
once for the batch sizes where that measured faster (``experiments.PARALLEL_MAX_BATCH``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import time
from pathlib import Path


def _train_for(args: tuple) -> float:
    """Images/s of one process training ``norm`` at ``batch_size`` with ``threads`` threads."""
    data_dir, batch_size, threads, seconds, start_at = args
    import torch

    torch.set_num_threads(threads)
    from cifar_app.core.data import load_cifar10
    from cifar_app.core.engine import Hooks, select_device, train
    from cifar_app.core.settings import TrainSettings
    from cifar_app.store.results import resolve_precision

    data = load_cifar10(data_dir)
    n = 2000 if batch_size <= 8 else 20_000 if batch_size <= 32 else 50_000
    s = TrainSettings(norm="group", epochs=1, batch_size=batch_size, train_limit=n, test_limit=1,
                      device="cpu")
    seen = {"images": 0}
    t0 = [0.0]

    def on_batch(b) -> None:
        if b.step == 3:  # warm-up done
            t0[0] = time.perf_counter()
        elif b.step > 3:
            seen["images"] += batch_size

    def should_stop() -> bool:
        return t0[0] > 0 and time.perf_counter() - t0[0] > seconds

    while time.time() < start_at:  # both processes of a pair start together
        time.sleep(0.01)
    arithmetic = resolve_precision(s.precision, select_device(s.device), s.norm, s.arch, s.batch_size)[0]
    train(s, data, Hooks(on_batch=on_batch), should_stop=should_stop, arithmetic=arithmetic)
    return seen["images"] / max(1e-9, time.perf_counter() - t0[0])


def measure(data_dir: str, batch_size: int, seconds: float) -> dict:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        one = pool.map(_train_for, [(data_dir, batch_size, 2, seconds, time.time())])[0]
    with ctx.Pool(2) as pool:
        start = time.time() + 8  # after both have imported torch and loaded the data
        two = pool.map(_train_for, [(data_dir, batch_size, 1, seconds, start)] * 2)
    return {"one_x_2_threads": one, "two_x_1_thread": sum(two)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--batch-sizes", default="2,4,8,16,32,128")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default="benchmarks/results/sweep_parallelism.json")
    args = p.parse_args(argv)
    rows = []
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        runs = [measure(args.data, bs, args.seconds) for _ in range(args.repeats)]
        row = {"batch_size": bs,
               "one_x_2_threads": statistics.median(r["one_x_2_threads"] for r in runs),
               "two_x_1_thread": statistics.median(r["two_x_1_thread"] for r in runs)}
        row["ratio"] = row["two_x_1_thread"] / row["one_x_2_threads"]
        rows.append(row)
        print(f"batch {bs:>4}: one x 2 threads {row['one_x_2_threads']:7.0f} img/s, two x 1 thread "
              f"{row['two_x_1_thread']:7.0f} img/s, ratio {row['ratio']:.2f}", flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
