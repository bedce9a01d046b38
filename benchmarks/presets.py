"""Run an experiment preset end to end and record its wall time and results.

    python benchmarks/presets.py batch-size --data PATH [--runs-dir runs-presets] [--ship]
    python benchmarks/presets.py seeds --export EXPERIMENT --runs-dir runs-presets [--ship]
    python benchmarks/presets.py seeds --export EXP1,EXP2 --runs-dir D [--with RESULTS.json]
                                 [--set F=V ...] [--ship]

Runs ``python -m cifar_app sweep --preset NAME --json`` (the local backend, as a user would), times
it, and writes ``benchmarks/results/preset_<name>.json`` (or, with ``--ship``, the app's copy): the
experiment's results as the app reads
them (``ExperimentStore.results``: every point's settings, state, accuracy, epoch records and
landscape records), plus the wall time and the machine. ``--ship`` writes it into
``cifar_app/store/reference_experiments/`` instead (its one copy), whose results fill the Claims page
on a fresh install.
``--export`` records an experiment already in the store (e.g. one only partly finished: its
completed points; or several, among which the preset's points were split: merged) without running
anything; ``--with`` adds the points of a results file written
earlier (the preset's other points, measured in another experiment: e.g. the recipe study's BN, GN
and LN seeds of the default recipe, with only the no-norm points run as the preset), after checking
that every point is one of the preset's (its settings with the sweep's ``--set``) and none is there
twice. The README quotes these files.
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
    p.add_argument("--data", help="the CIFAR-10 copy to train on (not needed with --export)")
    p.add_argument("--runs-dir", default="runs-presets")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--resume", metavar="EXPERIMENT",
                   help="finish a stopped run of this preset (wall time: the points' times, two at once)")
    p.add_argument("--export", metavar="EXPERIMENT[,EXPERIMENT...]",
                   help="record this stored experiment (or several, the preset's points split between "
                        "them, merged); run nothing")
    p.add_argument("--with", dest="with_files", action="append", default=[], metavar="RESULTS.json",
                   help="with --export: also this file's points (the preset's, from another experiment)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=V",
                   help="with --export: what the sweep set for every point (its --set)")
    p.add_argument("--ship", action="store_true", help="write the results into the app instead (one copy)")
    args = p.parse_args(argv)
    from cifar_app.core.settings import parse_setting
    from cifar_app.lab.experiments import ExperimentNotFound, ExperimentStore
    from cifar_app.lab.presets import PRESETS
    from cifar_app.store.results import REFERENCE_EXPERIMENTS, ExperimentResults
    from cifar_app.store.runstore import RunStore
    from cifar_app.store.states import TERMINAL

    exps = ExperimentStore(RunStore(args.runs_dir, reference_root=None))
    if args.export:
        preset = PRESETS[args.preset]
        try:
            parts = [exps.results(exps.get(e)) for e in args.export.split(",")]
        except ExperimentNotFound as e:
            p.error(f"{e} in {args.runs_dir}")
        parts += [ExperimentResults.from_dict(json.loads(Path(f).read_text(encoding="utf-8")))
                  for f in args.with_files]
        try:
            res = ExperimentResults.merge(parts, preset=preset.name, grid=preset.grid)
        except ValueError as e:
            p.error(str(e))
        sets = dict(s.split("=", 1) for s in args.set)
        if foreign := preset.foreign_points(res, {k: parse_setting(k, v) for k, v in sets.items()}):
            p.error(f"{len(foreign)} point(s) are not the {preset.name} preset's (with {sets or 'no --set'}),"
                    f" e.g. {foreign[0]}")
        done = [p for p in res.points if p.state in TERMINAL]  # a failed (diverged) point is a result
        wall = sum(p.seconds or 0 for p in done) / 2
        record = {**res.to_dict(), "wall_seconds": round(wall, 1), "compute": _compute(res.points, wall),
                  "partial": len(done) < len(res.points), "machine": _machine()}
        return _write(args, record)
    if not args.data:
        p.error("--data is required to run the preset")
    t0 = time.time()
    what = ["--resume", args.resume] if args.resume else ["--preset", args.preset]
    proc = subprocess.run([sys.executable, "-m", "cifar_app", "sweep", *what, "--json",
                           "--data", args.data, "--runs-dir", args.runs_dir],
                          stdout=subprocess.PIPE, text=True, check=True)
    wall = time.time() - t0
    result = json.loads(proc.stdout)
    if args.resume:  # this invocation ran only the missing points; two points train at once
        wall = sum(r["seconds"] or 0 for r in result["runs"]) / 2
    res = exps.results(exps.get(result["id"]))
    record = {**res.to_dict(), "wall_seconds": round(wall, 1), "compute": _compute(res.points, wall),
              "resumed": bool(args.resume), "machine": _machine()}
    print(f"{args.preset}: {len(result['runs'])} points in {wall / 60:.1f} min")
    return _write(args, record, REFERENCE_EXPERIMENTS)


def _machine() -> dict:
    """The machine that ran or exported the preset (each point's own arithmetic is in its ``env``)."""
    import torch

    from cifar_app.core.precision import cpu_info

    return {**cpu_info(), "cores": os.cpu_count(), "torch": torch.__version__,
            "python": platform.python_version()}


def _compute(points: list, wall: float) -> dict:
    """What the preset cost: its points' own seconds summed (one thread each) and the wall time."""
    secs = [p.seconds for p in points if p.seconds]
    return {"points": len(points), "point_seconds": round(sum(secs), 1), "wall_seconds": round(wall, 1),
            "mean_point_seconds": round(sum(secs) / len(secs), 1) if secs else None}


def _write(args: argparse.Namespace, record: dict, ship_to: Path | None = None) -> int:
    from cifar_app.store.results import REFERENCE_EXPERIMENTS

    text = json.dumps(record, indent=1)
    # one copy: a shipped result lives only in the package (the docs' tables read it there)
    targets = [ship_to or REFERENCE_EXPERIMENTS] if args.ship else [Path(args.out)]
    for folder in targets:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"preset_{args.preset}.json").write_text(text)
        print(f"-> {folder / f'preset_{args.preset}.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
