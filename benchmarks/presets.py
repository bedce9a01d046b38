"""Run an experiment preset end to end and record its wall time and results.

    python benchmarks/presets.py batch-size --data PATH [--runs-dir runs-presets]

Runs ``python -m cifar_app sweep --preset NAME --json`` (the local backend, as a user would), times
it, and writes ``benchmarks/results/preset_<name>.json``: the wall time, the machine, every point's
settings and accuracy, and per-norm summaries. The README's Experiments section quotes these files.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("preset")
    p.add_argument("--data", required=True)
    p.add_argument("--runs-dir", default="runs-presets")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--resume", metavar="EXPERIMENT",
                   help="finish a stopped run of this preset (wall time: the points' times, two at once)")
    args = p.parse_args(argv)
    t0 = time.time()
    what = ["--resume", args.resume] if args.resume else ["--preset", args.preset]
    proc = subprocess.run([sys.executable, "-m", "cifar_app", "sweep", *what, "--json",
                           "--data", args.data, "--runs-dir", args.runs_dir],
                          stdout=subprocess.PIPE, text=True, check=True)
    wall = time.time() - t0
    result = json.loads(proc.stdout)
    by_norm: dict[str, list] = {}
    for r in result["runs"]:
        by_norm.setdefault(r["settings"]["norm"], []).append(r)
    if args.resume:  # this invocation ran only the missing points; two points train at once
        wall = sum(r["seconds"] or 0 for r in result["runs"]) / 2
    record = {"preset": args.preset, "experiment": result["id"], "wall_seconds": round(wall, 1),
              "resumed": bool(args.resume),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "points": result["runs"], "by_norm": {
                  n: [(r["settings"]["batch_size"], r["settings"]["max_lr"], r["settings"]["seed"],
                       r["status"], r["final_test_acc"]) for r in rs] for n, rs in by_norm.items()}}
    out = Path(args.out) / f"preset_{args.preset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    print(f"{args.preset}: {len(result['runs'])} points in {wall / 60:.1f} min -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
