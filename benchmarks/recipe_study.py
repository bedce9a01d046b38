"""The recipe study (issue 20): a candidate recipe against another, at the full 20 epochs, BN / GN /
LN x seeds, judged at 2 standard errors.

    python benchmarks/recipe_study.py CANDIDATE --data PATH [--seeds 0,1,2] [--norms batch,group,layer]
                                      [--set FIELD=V ...] [--runs-dir DIR] [--resume EXPERIMENT]
    python benchmarks/recipe_study.py CANDIDATE --report EXPERIMENT[,EXPERIMENT...] [--runs-dir DIR]
    python benchmarks/recipe_study.py --list

A candidate is a few settings over today's defaults (``CANDIDATES``, all in the schema: the Train
page, the CLI and sweeps take them too). It runs as one sweep of the local backend, as a user would
(``python -m cifar_app sweep --grid seed=… --grid norm=… --set …``: two 1-thread runs at once, the
seeds preset's scheduling), and writes ``benchmarks/results/recipe_<candidate>.json``: the
experiment's results (``ExperimentStore.results``), per norm the final test and train accuracy
(mean ± std), the difference from the recipe it is compared with (with 2 SE,
``store.results.compare_by_norm``), the verdict, and the compute it cost (the points' seconds, the
wall time, the machine).

What a candidate is compared with (``AGAINST``, ``baseline_file``): the architecture candidates
with the ``seed-plain`` recipe (the default before the study: its shipped fp32 seeds preset, or its
bf16 seeds with ``--set precision=bf16``); every other lever with today's default recipe, whose seeds
are the separable-b study's (bf16: give ``--set precision=bf16``).

A verdict per norm: "better" when the difference exceeds 2 SE, "worse" when below −2 SE, else
"within noise". ``--report`` writes the file from the points completed so far, without training
(for a sweep stopped part-way, the rest resuming with ``--resume``; or for seeds run as separate
sweeps: their points merged). A candidate becomes the default only when it is better for every norm.
A norm with one seed (``--seeds 0``: a screen, to find the levers worth three) is judged against
the baseline's own seed-to-seed spread: 2 SE = 2 · s_baseline · sqrt(1 + 1/n_baseline), and the row
says ``screen``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

CANDIDATES: dict[str, dict[str, str]] = {
    # the architecture lever, against the seed-plain recipe (separable-b became the default)
    "separable": {"arch": "separable"},           # 2-3x the channels, same budget
    "separable-b": {"arch": "separable-b"},       # the default since the study
    # levers over today's default recipe
    "ema": {"ema": "0.999"},                      # an EMA of the weights over the last ~1,000 steps
    "smoothing-0.2": {"label_smoothing": "0.2"},  # airbench's amount
    "alternate-flip": {"flip": "alternate"},      # airbench's derandomised flip
    "norm-lr-16": {"norm_lr": "16"},              # the norms' scale and shift at 16x the LR
    "whiten-frozen": {"whiten": "frozen"},        # airbench's frozen patch-whitening first layer
    "whiten-init": {"whiten": "init"},            # the same start, then trained
    "dirac": {"dirac": "true"},                   # airbench's identity start of the convolutions
    # mixing pairs of images (issue 20: "for the last epochs, or only early"): mixup for the first
    # half only; cutmix for all but the last five (the unmixed end fits the real images)
    "mixup-early": {"mix": "mixup", "mix_alpha": "0.5", "mix_to": "10"},
    "cutmix": {"mix": "cutmix", "mix_alpha": "1.0", "mix_to": "15"},
    # progressive resizing: 16 (or 24) px in epoch 1, growing to 32 px by epoch 10
    "resize-16": {"resize_start": "16"},
    "resize-24": {"resize_start": "24"},
    # distillation from the three shipped reference runs as one ensemble teacher (its own row:
    # not "from labels alone"; the teacher cost the three reference runs' training)
    "distill-refs": {"teacher": "ref-batch,ref-group,ref-layer", "distill": "0.5"},
}
AGAINST = {"separable": "seed-plain", "separable-b": "seed-plain"}  # else the default recipe

RESULTS = Path(__file__).resolve().parent / "results"
# the seeds of each recipe in each arithmetic: what a candidate is compared with
DEFAULT_BF16_SEEDS = RESULTS / "recipe_separable-b.json"  # separable-b's 20-epoch seeds 0-2, bf16


def baseline_file(against: str, precision: str) -> Path:
    """The results of the ``against`` recipe's seeds in the candidate's arithmetic."""
    from cifar_app.store.results import BF16_ACCURACY, FP32_SEEDS

    files = {("seed-plain", "fp32"): FP32_SEEDS, ("seed-plain", "bf16"): BF16_ACCURACY,
             ("default", "bf16"): DEFAULT_BF16_SEEDS}
    arithmetic = "bf16" if precision == "bf16" else "fp32"
    if (against, arithmetic) not in files:
        raise SystemExit(f"no {arithmetic} seeds of the {against} recipe to compare with: add "
                         "--set precision=bf16")
    return files[(against, arithmetic)]


def verdict(diff: float, two_se: float) -> str:
    return "better" if diff > two_se else "worse" if diff < -two_se else "within noise"


def screen(xs: list[float], ys: list[float]) -> dict | None:
    """One candidate run against the baseline's seeds: the difference and 2 SE from the baseline's
    spread (a new seed varies as the baseline's do)."""
    if len(xs) != 1 or len(ys) < 2:
        return None
    return {"candidate": xs, "baseline": ys, "difference": xs[0] - statistics.fmean(ys),
            "two_se": 2 * statistics.stdev(ys) * (1 + 1 / len(ys)) ** 0.5, "screen": True}


def summarize(res, baseline) -> dict:
    """Per norm: test and train accuracy (mean, std, n) and the comparison with ``baseline``."""
    from cifar_app.store.results import compare_by_norm

    out = {}
    compared = compare_by_norm(res, baseline)
    base = baseline.final_accuracies()
    for norm, accs in res.final_accuracies().items():
        if norm not in compared and (one := screen(accs, base.get(norm, []))):
            compared[norm] = one
    for norm, accs in res.final_accuracies().items():
        train = [p.epochs[-1]["train_acc"] for p in res.completed()
                 if p.settings["norm"] == norm and p.epochs]
        row = {"n": len(accs), "test_mean": statistics.fmean(accs),
               "test_std": statistics.stdev(accs) if len(accs) > 1 else None,
               "train_mean": statistics.fmean(train) if train else None}
        if norm in compared:
            c = compared[norm]
            row |= {"baseline_mean": statistics.fmean(c["baseline"]), "difference": c["difference"],
                    "two_se": c["two_se"], "verdict": verdict(c["difference"], c["two_se"]),
                    "screen": c.get("screen", False)}
        out[norm] = row
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("candidate", nargs="?")
    p.add_argument("--list", action="store_true")
    p.add_argument("--data")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--norms", default="batch,group,layer")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=V")
    p.add_argument("--runs-dir", default="runs-recipes")
    p.add_argument("--resume", metavar="EXPERIMENT")
    p.add_argument("--report", metavar="EXPERIMENT[,EXPERIMENT...]",
                   help="write the results so far (of several sweeps: merged); train nothing")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    if args.list or not args.candidate:
        for name, changes in CANDIDATES.items():
            print(f"{name:15} " + " ".join(f"{k}={v}" for k, v in changes.items()))
        return 0
    if args.candidate not in CANDIDATES or not (args.data or args.report):
        p.error(f"give --data and one of: {', '.join(CANDIDATES)}")

    from cifar_app.core.precision import cpu_model
    from cifar_app.core.settings import TrainSettings
    from cifar_app.lab.experiments import ExperimentStore
    from cifar_app.store.results import ExperimentResults
    from cifar_app.store.runstore import RunStore

    changes = {**CANDIDATES[args.candidate], **dict(s.split("=", 1) for s in args.set)}
    exps = ExperimentStore(RunStore(args.runs_dir, reference_root=None))
    if args.report:
        found = [exps.get(e) for e in args.report.split(",")]
        changes |= {k: str(v) for k, v in found[0].base.items() if k in TrainSettings.names()
                    and v != TrainSettings.default(k)}
        res = ExperimentResults.merge([exps.results(e) for e in found])
        wall = None
    else:
        if args.resume:
            what = ["--resume", args.resume]
        else:
            what = ["--grid", f"seed={args.seeds}", "--grid", f"norm={args.norms}",
                    "--name", f"recipe {args.candidate}", "--yes"]
            what += [a for k, v in changes.items() for a in ("--set", f"{k}={v}")]
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-m", "cifar_app", "sweep", *what, "--json", "--data",
                               args.data, "--runs-dir", args.runs_dir], stdout=subprocess.PIPE, text=True,
                              check=True)
        wall = round(time.time() - t0, 1)
        res = exps.results(exps.get(json.loads(proc.stdout)["id"]))
    against = AGAINST.get(args.candidate, "default")
    base_path = baseline_file(against, changes.get("precision", ""))
    baseline = ExperimentResults.from_dict(json.loads(base_path.read_text(encoding="utf-8")))
    done = res.completed()
    record = {"candidate": args.candidate, "changes": changes, "by_norm": summarize(res, baseline),
              "compute": {"point_seconds": round(sum(pt.seconds for pt in done), 1),
                          "wall_seconds": wall, "points": len(done), "of_points": len(res.points),
                          "resumed": bool(args.resume), "cpu": cpu_model()},
              "baseline": str(base_path.name), "against": against, **res.to_dict()}
    out = Path(args.out) / f"recipe_{args.candidate}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1))
    for norm, row in record["by_norm"].items():
        std = f" ± {100 * row['test_std']:.2f}" if row["test_std"] is not None else ""
        vs = (f", {100 * row['difference']:+.2f} vs today (2 SE {100 * row['two_se']:.2f}): {row['verdict']}"
              + (" (screen: one seed)" if row["screen"] else "") if "verdict" in row else "")
        print(f"{norm}: {100 * row['test_mean']:.2f}%{std} (n={row['n']}){vs}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
