"""Copy a completed run into the package as a read-only reference run.

    python benchmarks/ship_reference.py RUNS_DIR/RUN_ID ref-batch --label "Reference BN" [--data PATH]

Keeps settings, status, the metrics log (batch records thinned to every ``--batch-every``-th step to
stay small; every epoch record kept), the final model and the test predictions. With ``--data`` the
predictions are recomputed here on the CPU in float32 from the shipped model, so that
``python -m cifar_app evaluate`` on the same data reproduces them exactly.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cifar_app.store.run import Run
from cifar_app.store.runstore import REFERENCE_ROOT, copy_run
from cifar_app.store.states import RunState


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("name", help="reference id, e.g. ref-batch")
    p.add_argument("--label", required=True)
    p.add_argument("--data", default=None, help="recompute the test predictions on this data")
    p.add_argument("--batch-every", type=int, default=5)
    p.add_argument("--batchdep", action="store_true",
                   help="with --data: also measure and ship the batch dependence (batchdep.json)")
    args = p.parse_args(argv)

    src = Run(args.run_dir)
    status = src.raw_status()
    if status.get("state") != RunState.COMPLETED:
        raise SystemExit(f"{src.id} is {status.get('state')}, not completed")
    ref = copy_run(src, REFERENCE_ROOT / args.name, batch_every=args.batch_every, status={
        "state": RunState.COMPLETED, "label": args.label, "created": status.get("created"),
        "started": status.get("started"), "finished": status.get("finished"),
        "params": status.get("params"), "data_source": status.get("data_source"),
        "trained_from": src.id, "pid": None,
        # the arithmetic and machine it trained on, as the run recorded them
        **{k: status[k] for k in ("precision", "precision_why", "reproducible_against_fp32", "device",
                                  "cpu", "n_train", "n_test") if k in status},
    })
    if args.data:
        from cifar_app.core.data import load_cifar10
        from cifar_app.lab.analysis import evaluate_model
        from cifar_app.store.inference import load_model

        data = load_cifar10(args.data)
        ev = evaluate_model(load_model(ref), data, ref.settings().test_limit)
        ref.save_predictions(ev.probs, ev.labels, data.limit(test_limit=len(ev.labels)).test_fingerprint)
        print(f"{args.name}: re-evaluated accuracy {100 * ev.accuracy:.2f}% on {len(ev.labels):,} images")
        if args.batchdep:
            from cifar_app.lab.batchdep import batch_dependence

            result = batch_dependence(load_model(ref), data, ref.settings().test_limit)
            ref.save_result("batchdep", result.to_dict())
            print(f"{args.name}: batch statistics accuracy by test batch size "
                  + ", ".join(f"{k}: {100 * a:.2f}%" for k, a in result.batch_stats.items()))
    size = sum(f.stat().st_size for f in ref.path.iterdir())
    print(f"shipped {src.id} as {ref.path} ({size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
