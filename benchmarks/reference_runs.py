"""The shipped reference runs' accuracy, single view and with flip test-time augmentation.

    python benchmarks/reference_runs.py --data PATH     # -> benchmarks/results/reference_runs.json

Runs ``python -m cifar_app evaluate RUN --json`` (and ``--tta``) for each reference run, as a user
would, and records the figures with each run's parameters and last-epoch train accuracy. The
docs' accuracy table (``docs/results.md``) is generated from this file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parent / "results" / "reference_runs.json"


def evaluate(run: str, data: str, tta: bool) -> dict:
    cmd = [sys.executable, "-m", "cifar_app", "evaluate", run, "--json", "--data", data]
    cmd += ["--tta"] if tta else []
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    from cifar_app.store.runstore import RunStore

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in (r for r in RunStore(Path(tmp) / "runs").list() if r.reference):
            single, tta = evaluate(run.id, args.data, False), evaluate(run.id, args.data, True)
            epochs = run.metrics().epochs
            rows.append({"run": run.id, "norm": run.settings().norm, "groups": run.settings().groups,
                         "params": single["params"], "accuracy": single["accuracy"],
                         "tta_accuracy": tta["accuracy"],
                         "n_test": single["n"], "train_acc": epochs[-1].train_acc if epochs else None})
            print(f"{run.id}: {100 * single['accuracy']:.2f}% (TTA {100 * tta['accuracy']:.2f}%)",
                  file=sys.stderr)
    Path(args.out).write_text(json.dumps({"runs": rows}, indent=1))
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
