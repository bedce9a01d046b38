"""What the landscape probes cost: one epoch of the default recipe on the full training set with
``landscape=8`` (so all 8 probes fall in it), the probes' own time against the epoch's.

    python benchmarks/landscape_cost.py --data PATH [--threads 2] [--norm batch]

The 20-epoch recipe makes the same 8 probes over 20 epochs, so its cost is the probes' seconds over
20 epochs' training seconds. Writes ``benchmarks/results/landscape_cost.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from cifar_app.core.data import load_cifar10
from cifar_app.core.engine import Hooks, select_device, train
from cifar_app.core.settings import TrainSettings
from cifar_app.store.results import resolve_precision


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--norms", default="batch,none")
    p.add_argument("--out", default="benchmarks/results/landscape_cost.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    data = load_cifar10(args.data)
    rows = []
    for norm in args.norms.split(","):
        s = TrainSettings(norm=norm, epochs=1, landscape=8, device="cpu")
        records: list[dict] = []
        t0 = time.perf_counter()
        arithmetic = resolve_precision(s.precision, select_device(s.device), s.norm, s.arch, s.batch_size)[0]
        result = train(s, data, Hooks(on_landscape=records.append), arithmetic=arithmetic)
        wall = time.perf_counter() - t0
        probes = sum(r["seconds"] for r in records)
        epoch_train = result.history[0].seconds - probes  # the epoch's time includes the probes
        rows.append({"norm": norm, "probes": len(records), "probe_seconds": round(probes, 2),
                     "seconds_per_probe": round(probes / len(records), 2),
                     "epoch_seconds_without_probes": round(epoch_train, 1), "wall_seconds": round(wall, 1),
                     "cost_20_epochs_pct": round(100 * probes / (20 * epoch_train), 2),
                     "cost_this_epoch_pct": round(100 * probes / epoch_train, 1)})
        print(rows[-1])
    out = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "threads": args.threads, "torch": torch.__version__, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
