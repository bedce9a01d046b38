"""The CLI's verbs of the lab and the app: sweeps (here or on Ray), the claims' verdicts, bf16
precision, batch dependence, and serving the dashboard."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from cifar_app.cli.common import (
    RECIPE_HELP,
    data_dir,
    int_in,
    loader,
    open_store,
    pct,
    recipe_arg,
    runs_dir,
    setting_type,
)
from cifar_app.core.data import load_cifar10, require_dataset
from cifar_app.core.settings import parse_setting
from cifar_app.lab.backends import SweepWorkerArgs
from cifar_app.lab.experiments import BACKENDS
from cifar_app.lab.presets import CONFIRM_ABOVE
from cifar_app.store.fileio import StoreError
from cifar_app.store.states import TERMINAL


def cmd_serve(args: argparse.Namespace) -> int:
    """``streamlit run`` of the packaged app (``cifar_app/web/dashboard.py``) on ``--address``; when
    that is reachable from other machines, with an access token (``$CIFAR_APP_TOKEN`` or a new one,
    printed here as Jupyter does)."""
    import os
    import secrets

    from cifar_app.web import access
    from cifar_app.web.app import server_flags

    dashboard = Path(__file__).resolve().parents[1] / "web" / "dashboard.py"  # packaged: from any folder
    env = dict(os.environ)
    if args.public_read:
        env[access.PUBLIC_READ_ENV] = "1"
    pol = access.policy(args.address, env)
    if args.revoke_keys:
        print(f"Access keys revoked: every browser must give the token again (key version "
              f"{access.revoke_keys()}).", file=sys.stderr, flush=True)
    if pol.token_required:
        host = args.address if args.address not in ("", "0.0.0.0", "::") else "<this host>"
        without = ("visitors without it can only view curves and tables" if pol.public_read
                   else "it shows nothing without it (--public-read lets anyone view)")
        where = f"The app is reachable beyond this machine ({args.address or 'all interfaces'})"
        if env.get(access.TOKEN_ENV):  # the user's own: checked, never printed
            if problem := access.token_problem(env[access.TOKEN_ENV]):
                raise ValueError(problem)
            print(f"{where}: it needs the access token you set in ${access.TOKEN_ENV} ({without}).",
                  file=sys.stderr, flush=True)
        else:
            env[access.TOKEN_ENV] = secrets.token_urlsafe(24)
            print(f"{where}: it needs this access token ({without})\n    {env[access.TOKEN_ENV]}\nor open "
                  f"http://{host}:{args.port}/?token={env[access.TOKEN_ENV]}", file=sys.stderr, flush=True)
    cmd = [sys.executable, "-m", "streamlit", "run", str(dashboard), *server_flags(args.address, args.port)]
    os.execvpe(sys.executable, cmd, env)
    return 0  # pragma: no cover - exec does not return


def _experiment_json(exps, exp) -> dict:
    points = exps.point_statuses(exp)
    return {"id": exp.id, "name": exp.name, "preset": exp.preset, "status": exps.state(exp),
            "points": len(points), "counts": exps.counts(exp),
            "runs": [{"id": p.run_id, "settings": p.settings, "status": p.state,
                      "best_test_acc": p.best_test_acc, "final_test_acc": p.final_test_acc,
                      "seconds": p.seconds, "error": p.error} for p in points]}


def cmd_sweep(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cifar_app.lab.backends import run_sweep
    from cifar_app.lab.experiments import ExperimentStore
    from cifar_app.lab.presets import PRESETS, parse_cli_grid

    exps = ExperimentStore(open_store(args))
    if args.resume:
        exp = exps.get(args.resume)
    else:
        if args.preset and args.grid:
            raise ValueError("give --preset or --grid, not both")
        if not args.preset and not args.grid:
            raise ValueError(f"give --preset ({', '.join(PRESETS)}) or at least one --grid FIELD=V1,V2")
        sets, grid = parse_cli_grid(args.grid, args.set)
        base = {**args.recipe, **sets}  # a recipe, under the --set values
        rules = list(args.rule)
        if args.norms and not args.preset:
            raise ValueError("--norms goes with --preset; in a grid, write --grid norm=...")
        if args.preset:
            preset = PRESETS[args.preset]
            norms = [parse_setting("norm", n) for n in args.norms.split(",")] if args.norms else None
            base, grid, rules = preset.spec(norms, recipe=args.recipe, sets=sets, rules=rules)
        if not args.download:
            require_dataset(args.data)
        exp = exps.create(args.name or args.preset or "custom sweep", base, grid, rules,
                          preset=args.preset, backend=args.backend, confirm_large=args.yes,
                          ray_address=args.ray_address, cpus_per_point=args.cpus_per_point,
                          gpus_per_point=args.gpus_per_point)
    print(f"experiment {exp.id}: {len(exp.points)} points ({exp.backend} backend)", file=sys.stderr)
    bar = tqdm(total=len(exp.points), desc="points", unit="point", file=sys.stderr, dynamic_ncols=True,
               disable=args.json)
    bar.update(sum(1 for p in exps.point_statuses(exp) if p.state in TERMINAL))
    try:
        run_sweep(exps, exp.id, lambda: loader(args.data, args.download, bar=not args.json), args.data,
                  ray_address=args.ray_address, on_point=lambda i, n, state: bar.update(1))
    except KeyboardInterrupt:
        print(f"\nstopped; resume with: python -m cifar_app sweep --resume {exp.id}", file=sys.stderr)
        return 130
    finally:
        bar.close()
    exp = exps.get(exp.id)
    if args.json:
        print(json.dumps(_experiment_json(exps, exp), indent=1))
    else:
        for p in exps.point_statuses(exp):
            print(f"{p.label:<40} {p.state:<11} best {pct(p.best_test_acc):>8}  {p.run_id or ''}")
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    """The seed's claims with their verdicts, computed from the store (``lab.claims``)."""
    from cifar_app.lab.claims import evaluate, recipe_note

    rows = evaluate(open_store(args))
    if args.json:
        print(json.dumps({"claims": rows}, indent=1, allow_nan=False))
        return 0
    for r in rows:
        print(f"{r['verdict']:<17} {r['claim']}")
        print(f"{'':<17} rule: {r['rule']}")
        if r["effect"] is not None:
            low, high = r["ci95"] or (None, None)
            ci = "unbounded" if low is None or high is None else f"[{low:+.3g}, {high:+.3g}]"
            print(f"{'':<17} effect {r['effect']:+.3g} {r['unit']}, 95% CI {ci}, n = "
                  f"{' vs '.join(map(str, r['n']))}, MDE {r['mde']:.3g}")
        if r["paper"]:
            print(f"{'':<17} paper: {r['paper']['text']} ({r['paper']['source']})")
        if r["figure"]:
            print(f"{'':<17} {r['figure']}")
        if r["note"]:
            print(f"{'':<17} ({r['note']})")
        if note := recipe_note(r):
            print(f"{'':<17} ({note})")
    return 0


def cmd_precision(args: argparse.Namespace) -> int:
    """This machine's bf16 arithmetic, the bf16-vs-fp32 accuracy verdict ``auto`` goes by, and what
    ``auto`` picks per norm (store/results.py)."""
    import torch

    from cifar_app.core import precision
    from cifar_app.store import results

    verdict = results.bf16_verdict(results.bf16_results_path(), results.FP32_SEEDS)
    out = {**precision.cpu_info(), "verdict": verdict, "auto": {}}
    if args.resolve:
        for norm in args.norms.split(","):
            out["auto"][norm] = results.resolve_precision("auto", torch.device("cpu"), norm)
    if args.json:
        print(json.dumps(out, indent=1))
        return 0
    print(f"CPU: {out['cpu']}; bf16 instructions: {'yes' if out['cpu_bf16'] else 'no'}")
    if verdict is None:
        print("bf16 accuracy: no results (the bf16-seeds preset against the fp32 seeds of the same recipe)")
    else:
        print(f"bf16 accuracy: {'within' if verdict['within_noise'] else 'below'} fp32's seed noise")
        for norm, r in verdict["norms"].items():
            b, f = (100 * statistics.fmean(r[k]) for k in ("bf16", "fp32"))
            print(f"  {norm:6} bf16 {b:.2f}% (n={len(r['bf16'])})  fp32 {f:.2f}% (n={len(r['fp32'])})  "
                  f"difference {100 * r['difference']:+.2f}, 2 SE {100 * r['two_se']:.2f}")
    for norm, (arith, why) in out["auto"].items():
        print(f"auto for {norm}: {arith} ({why})")
    return 0


def cmd_batchdep(args: argparse.Namespace) -> int:
    """Batch dependence of a run's model (batchdep.py); cached with a user run."""
    from cifar_app.lab.batchdep import batch_dependence
    from cifar_app.store.inference import load_model

    run = open_store(args).get(args.run)
    loaded = load_model(run)
    data = load_cifar10(args.data)
    result = batch_dependence(loaded, data, args.test_limit)
    if not run.reference:
        try:
            run.save_result("batchdep", result.to_dict())
        except StoreError as e:  # a read-only store: the measurement is still the answer
            print(f"note: not cached with the run: {e}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
        return 0
    print(f"{run.id} on {result.n_test:,} test images: eval mode {pct(result.eval_acc)}")
    for k, acc in result.batch_stats.items():
        print(f"  batch statistics, test batch {k:>4}: {pct(acc):>8}  "
              f"({result.differ_from_eval[k]:,} predictions differ from eval mode)")
    if result.precise_bn_acc is not None:
        print(f"  PreciseBN over {result.precise_bn_images:,} training images: {pct(result.precise_bn_acc)}")
    return 0


def cmd_sweep_worker(args: argparse.Namespace) -> int:
    from cifar_app.lab.backends import run_sweep
    from cifar_app.lab.experiments import ExperimentStore

    w = SweepWorkerArgs.from_namespace(args)
    run_sweep(ExperimentStore(open_store(args)), w.experiment, lambda: loader(w.data, bar=False), w.data,
              ray_address=w.ray_address)
    return 0


def cmd_sweeps(args: argparse.Namespace) -> int:
    from cifar_app.lab.experiments import ExperimentStore

    exps = ExperimentStore(open_store(args))
    rows = [_experiment_json(exps, e) for e in exps.list()]
    if args.json:
        print(json.dumps([{k: r[k] for k in ("id", "name", "preset", "status", "points", "counts")}
                          for r in rows], indent=1))
        return 0
    if not rows:
        print("no experiments yet: python -m cifar_app sweep --preset batch-size")
    for r in rows:
        counts = ", ".join(f"{n} {k}" for k, n in sorted(r["counts"].items()))
        print(f"{r['id']:<50} {r['status']:<11} {r['points']:>4} points ({counts})  {r['name']}")
    return 0


def cmd_sweep_stop(args: argparse.Namespace) -> int:
    from cifar_app.lab.experiments import ExperimentStore

    ExperimentStore(open_store(args)).request_stop(args.experiment)
    print(f"stop requested for {args.experiment}")
    return 0


def add_parsers(sub) -> None:
    """The verbs of the lab and the app: sweep, sweeps, sweep-stop, sweep-worker, claims, precision,
    batchdep, serve."""
    from cifar_app.core.architectures import NORMS
    from cifar_app.lab.presets import PRESETS, RULES

    sw = sub.add_parser("sweep", help="run an experiment: a grid of runs (foreground, progress bar)")
    sw.add_argument("--preset", choices=list(PRESETS), help="one of the ready-made experiments")
    sw.add_argument("--norms", metavar="N1,N2,...",
                    help="with --preset: these normalizations instead of the preset's (e.g. the wider "
                         f"family: {', '.join(NORMS)})")
    sw.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                    help="a settings field and its values (repeatable: the cross product runs)")
    sw.add_argument("--set", action="append", default=[], metavar="FIELD=V",
                    help="a setting for every point (repeatable)")
    sw.add_argument("--recipe", type=recipe_arg, default={}, metavar="NAME", help=RECIPE_HELP)
    sw.add_argument("--rule", action="append", default=[], choices=list(RULES),
                    help="a derived setting: " + "; ".join(f"{k}: {v}" for k, v in RULES.items()))
    sw.add_argument("--name", help="a display name")
    sw.add_argument("--backend", choices=list(BACKENDS), default="local")
    sw.add_argument("--ray-address", default=None, help="Ray cluster address (default $RAY_ADDRESS)")
    sw.add_argument("--cpus-per-point", type=int, default=1, metavar="N",
                    help="ray backend: CPUs each point asks for (its torch threads; default 1)")
    sw.add_argument("--gpus-per-point", type=float, default=0.0, metavar="F",
                    help="ray backend: GPUs each point asks for: a fraction packs 1/F points on a GPU "
                         "(0.25: four), a whole number gives each point that many; default 0 (CPU)")
    sw.add_argument("--resume", metavar="EXPERIMENT", help="continue a stopped or interrupted experiment")
    sw.add_argument("--yes", action="store_true", help=f"run a grid of more than {CONFIRM_ABOVE} points")
    sw.add_argument("--download", action="store_true", help="download CIFAR-10 if it is not found")
    sw.add_argument("--json", action="store_true")
    data_dir(sw), runs_dir(sw)
    sw.set_defaults(func=cmd_sweep)

    sws = sub.add_parser("sweeps", help="list experiments with status and point counts")
    sws.add_argument("--json", action="store_true")
    runs_dir(sws)
    sws.set_defaults(func=cmd_sweeps)

    sst = sub.add_parser("sweep-stop", help="stop an experiment's running point, cancel the rest")
    sst.add_argument("experiment")
    runs_dir(sst)
    sst.set_defaults(func=cmd_sweep_stop)

    swk = sub.add_parser("sweep-worker", help="(internal) run a stored experiment; used by the dashboard")
    SweepWorkerArgs.add_arguments(swk)
    data_dir(swk), runs_dir(swk)
    swk.set_defaults(func=cmd_sweep_worker)

    cl = sub.add_parser("claims", help="the seed's claims about BN, GN and LN with computed verdicts")
    cl.add_argument("--json", action="store_true")
    runs_dir(cl)
    cl.set_defaults(func=cmd_claims)

    pr = sub.add_parser("precision", help="bf16 on this CPU: the accuracy verdict and what auto picks")
    pr.add_argument("--resolve", action="store_true",
                    help="also say what precision=auto picks per norm (may measure the speed: seconds)")
    pr.add_argument("--norms", default="batch,group,layer")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_precision)

    bd = sub.add_parser("batchdep", help="accuracy with eval-mode, batch and PreciseBN statistics")
    bd.add_argument("run")
    bd.add_argument("--test-limit", type=setting_type("test_limit"), default=None)
    bd.add_argument("--json", action="store_true")
    data_dir(bd), runs_dir(bd)
    bd.set_defaults(func=cmd_batchdep)

    sv = sub.add_parser("serve", help="start the dashboard (127.0.0.1 unless --address says otherwise)")
    sv.add_argument("--address", default="127.0.0.1",
                    help="address to listen on; anything but loopback asks for an access token")
    sv.add_argument("--public-read", action="store_true",
                    help="on an exposed address, let visitors without the token view curves and tables "
                         "(no downloads, uploads, exports, computing or server folders); default: "
                         "they see only the token prompt")
    sv.add_argument("--port", type=int_in(1, 65535), default=8501)
    sv.add_argument("--revoke-keys", action="store_true",
                    help="first make every browser's access cookie invalid (the token stays the same)")
    sv.set_defaults(func=cmd_serve)
