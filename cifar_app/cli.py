"""Command line: ``python -m cifar_app {train,evaluate,predict,runs,summary,...}``."""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from cifar_app.core.data import DataError, default_data_dir, download_cifar10, load_cifar10, require_dataset
from cifar_app.core.settings import RECIPES, SettingsError, TrainSettings, parse_setting, recipe_values
from cifar_app.lab.experiments import BACKENDS, ExperimentNotFound
from cifar_app.lab.presets import CONFIRM_ABOVE
from cifar_app.store.export import BundleError
from cifar_app.store.fileio import StoreError
from cifar_app.store.jobs import SweepWorkerArgs, WorkerArgs
from cifar_app.store.run import ReadOnlyRun, RunDamaged, RunNotFound
from cifar_app.store.runstore import RunStore
from cifar_app.store.states import ACTIVE, TERMINAL, RunState

# Settings the CLI does not offer as flags of ``train`` (``--norm`` is required, so it is added apart).
_NOT_FLAGS = ("norm",)


def _pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def _store(args: argparse.Namespace) -> RunStore:
    return RunStore(args.runs_dir)


def _loader(data_dir: str | None, download: bool = False, bar: bool = True):
    """A ``load_cifar10`` call for ``execute_run`` that shows decoding progress with tqdm (``bar``;
    the worker's log gets none: its progress goes to the run's status)."""
    from tqdm import tqdm

    show_bar = bar

    def load(progress=None) -> object:
        tq = None

        def show(done: int, total: int) -> None:
            nonlocal tq
            if tq is None and show_bar:
                tq = tqdm(total=total, desc="decoding CIFAR-10 images (once; cached after)",
                           unit="img", file=sys.stderr, leave=False, dynamic_ncols=True)
            if tq is not None:
                tq.update(done - tq.n)
            if progress is not None:
                progress(done, total)

        try:
            return load_cifar10(data_dir, download=download, progress=show)
        finally:
            if tq is not None:
                tq.close()

    return load


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cifar_app.core.records import BatchStats
    from cifar_app.store.jobs import execute_run

    given = {name: getattr(args, name) for name in TrainSettings.names()
             if getattr(args, name, None) is not None}
    settings = TrainSettings(**{**args.recipe, **given}).validate()
    if not args.download:
        require_dataset(args.data)  # fail before a run is created
    store = _store(args)
    run = store.create(settings, label=args.label)
    print(f"run {run.id}: {settings.norm} norm, {settings.param_count():,} parameters, "
          f"{settings.epochs} epochs", file=sys.stderr)
    bar = None

    def progress(event: object) -> None:
        nonlocal bar
        if isinstance(event, BatchStats):
            if bar is None or event.batch == 1:
                if bar is not None:
                    bar.close()
                bar = tqdm(total=event.batches, desc=f"epoch {event.epoch}/{settings.epochs}",
                           unit="batch", file=sys.stderr, leave=False, dynamic_ncols=True)
            bar.update(1)
            bar.set_postfix(loss=f"{event.loss:.3f}")
        else:
            if bar is not None:
                bar.close()
                bar = None
            tqdm.write(f"epoch {event.epoch:2d}/{settings.epochs}  train loss {event.train_loss:.4f} "
                       f"acc {_pct(event.train_acc)}  test loss {event.test_loss:.4f} acc "
                       f"{_pct(event.test_acc)}  {event.seconds:.1f}s  {event.images_per_s:.0f} img/s",
                       file=sys.stderr)

    try:
        execute_run(store, run.id, data=_loader(args.data, args.download), progress=progress)
    except KeyboardInterrupt:
        print(f"\nstopped; resume with: python -m cifar_app resume {run.id}", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    summary = run.summary()
    if summary.status == RunState.STOPPED:
        print(f"{run.id}\tstopped after {summary.epoch} epochs; resume with: "
              f"python -m cifar_app resume {run.id}")
        return 0
    print(f"{run.id}\tfinal test accuracy {_pct(summary.final_test_acc)}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from cifar_app.store.jobs import execute_run

    w = WorkerArgs.from_namespace(args)
    if w.threads is not None:
        import torch

        torch.set_num_threads(w.threads)
    execute_run(_store(args), w.run, data=_loader(w.data, bar=False), resume=w.resume, slot_held=w.slot_held)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from cifar_app.store.jobs import can_resume, execute_run

    store = _store(args)
    run = store.get(args.run)
    if (damage := run.damage()) is not None:
        raise damage
    if not can_resume(run):
        print(f"error: {run.id} is {run.state()}; only stopped, failed or "
              "interrupted runs can be resumed", file=sys.stderr)
        return 2
    run.clear_stop()  # the user's resume: an old stop request no longer applies
    execute_run(store, run.id, data=_loader(args.data), resume=True)
    summary = run.summary()
    if summary.status == RunState.STOPPED:
        print(f"{run.id}\tstopped after {summary.epoch} epochs")
        return 0
    print(f"{run.id}\tfinal test accuracy {_pct(summary.final_test_acc)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cifar_app.lab.analysis import evaluate_model, per_class_accuracy
    from cifar_app.store.inference import load_model

    run = _store(args).get(args.run)
    loaded = load_model(run)
    data = load_cifar10(args.data)
    ev = evaluate_model(loaded, data, args.test_limit, flip_tta=args.tta)
    per_class = per_class_accuracy(ev.labels, ev.preds, len(data.classes))
    from cifar_app.core.model import count_parameters

    result = {
        "run": run.id, "accuracy": ev.accuracy, "loss": ev.loss, "n": len(ev.labels),
        "per_class": {c: float(a) for c, a in zip(data.classes, per_class)},
        "params": count_parameters(loaded.model), "data": data.source, "flip_tta": args.tta,
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        tta = " with flip test-time augmentation" if args.tta else ""
        print(f"{run.id}: accuracy {_pct(ev.accuracy)}, loss {ev.loss:.4f} on {ev.labels.size:,} "
              f"test images{tta} ({data.source}); {result['params']:,} parameters")
        for c, a in result["per_class"].items():
            print(f"  {c:<11} {_pct(a)}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from cifar_app.store.inference import ImageError, classify_each, load_model

    loaded = load_model(_store(args).get(args.run))
    results = classify_each([Path(p) for p in args.images], loaded, top_k=args.top_k)
    out, failed = [], 0
    for path, r in zip(args.images, results):
        if isinstance(r, ImageError):
            failed += 1
            out.append({"file": path, "error": str(r)})
        else:
            out.append({"file": path, "top_k": [{"class": c, "prob": p} for c, p in r.top_k]})
    if args.json:
        print(json.dumps(out, indent=1))
    else:
        for item in out:
            if "error" in item:
                print(f"{item['file']}: error: {item['error']}", file=sys.stderr)
            else:
                best = ", ".join(f"{t['class']} {_pct(t['prob'])}" for t in item["top_k"])
                print(f"{item['file']}: {best}")
    return 1 if failed else 0


def cmd_runs(args: argparse.Namespace) -> int:
    rows = _store(args).summaries()
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=1))
        return 0
    if not rows:
        print("no runs yet: python -m cifar_app train --norm batch")
        return 0
    print(f"{'id':<30} {'norm':<6} {'status':<11} {'epoch':>7} {'best acc':>9}  label")
    for r in rows:
        rid = r.id + (" (ref)" if r.reference else "")
        planned = "?" if r.epochs is None else r.epochs
        label = r.label if r.label != r.id else ""
        print(f"{rid:<30} {r.norm:<6} {r.status:<11} {r.epoch:>3}/{planned:<3} "
              f"{_pct(r.best_test_acc):>9}  {label}")
        if r.damaged:
            print(f"    {r.error}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from cifar_app.core.model import PARAM_BUDGET, build_model, count_parameters, summarize

    model = build_model(args.norm, args.groups, arch=args.arch)
    rows = summarize(model)
    total = count_parameters(model)
    if args.json:
        print(json.dumps({"norm": args.norm, "arch": args.arch, "total_params": total,
                          "budget": PARAM_BUDGET, "layers": [asdict(r) for r in rows]}, indent=1))
        return 0
    print(f"{'layer':<5} {'kind':<38} {'output':>12} {'params':>8} {'RF':>4}")
    for r in rows:
        shape = "x".join(map(str, r.output_shape))
        print(f"{r.name:<5} {r.kind:<38} {shape:>12} {r.params:>8,} {r.receptive_field:>4}")
    print(f"total {total:,} parameters (budget {PARAM_BUDGET:,})")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    run = _store(args).get(args.run)
    state = run.state()
    if state not in ACTIVE:
        print(f"error: {run.id} is {state}, not training; nothing to stop", file=sys.stderr)
        return 2
    run.request_stop()
    print(f"stop requested for {run.id}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _store(args).delete(args.run)
    print(f"deleted {args.run}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """``streamlit run`` of the packaged app (``cifar_app/web/dashboard.py``) on ``--address``; when
    that is reachable from other machines, with an access token (``$CIFAR_APP_TOKEN`` or a new one,
    printed here as Jupyter does)."""
    import os
    import secrets

    from cifar_app.web import access

    dashboard = Path(__file__).resolve().parent / "web" / "dashboard.py"  # packaged: from any folder
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
    cmd = [sys.executable, "-m", "streamlit", "run", str(dashboard), "--server.address", args.address,
           "--server.port", str(args.port), "--server.fileWatcherType", "none",
           "--runner.postScriptGC", "false"]  # as in .streamlit/config.toml, from any folder
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

    exps = ExperimentStore(_store(args))
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
        run_sweep(exps, exp.id, lambda: _loader(args.data, args.download, bar=not args.json), args.data,
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
            print(f"{p.label:<40} {p.state:<11} best {_pct(p.best_test_acc):>8}  {p.run_id or ''}")
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    """The seed's claims with their verdicts, computed from the store (claims.py)."""
    from cifar_app.lab.claims import evaluate, recipe_note

    rows = evaluate(_store(args))
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
    ``auto`` picks per norm (precision.py)."""
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

    run = _store(args).get(args.run)
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
    print(f"{run.id} on {result.n_test:,} test images: eval mode {_pct(result.eval_acc)}")
    for k, acc in result.batch_stats.items():
        print(f"  batch statistics, test batch {k:>4}: {_pct(acc):>8}  "
              f"({result.differ_from_eval[k]:,} predictions differ from eval mode)")
    if result.precise_bn_acc is not None:
        print(f"  PreciseBN over {result.precise_bn_images:,} training images: {_pct(result.precise_bn_acc)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cifar_app.store.export import export_bundle, export_csv, export_onnx

    run = _store(args).get(args.run)
    if args.format == "bundle":
        paths = [export_bundle(run, args.out)]
    elif args.format == "onnx":
        paths = [export_onnx(run, args.out)]
    else:
        names = None
        if args.data is not None or Path(default_data_dir()).exists():
            try:
                names = load_cifar10(args.data).limit(test_limit=run.settings().test_limit).test_names
            except DataError:
                names = None
        paths = export_csv(run, args.out, names)
    for p in paths:
        print(p)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from cifar_app.store.export import import_bundle

    run = import_bundle(_store(args), args.bundle, origin=Path(args.bundle).name)
    print(f"imported as {run.id} ({run.label})")
    return 0


def cmd_sweep_worker(args: argparse.Namespace) -> int:
    from cifar_app.lab.backends import run_sweep
    from cifar_app.lab.experiments import ExperimentStore

    w = SweepWorkerArgs.from_namespace(args)
    run_sweep(ExperimentStore(_store(args)), w.experiment, lambda: _loader(w.data, bar=False), w.data,
              ray_address=w.ray_address)
    return 0


def cmd_sweeps(args: argparse.Namespace) -> int:
    from cifar_app.lab.experiments import ExperimentStore

    exps = ExperimentStore(_store(args))
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

    ExperimentStore(_store(args)).request_stop(args.experiment)
    print(f"stop requested for {args.experiment}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    root = download_cifar10(args.data)
    print(f"CIFAR-10 is in {root}")
    return 0


def _setting_type(name: str):
    """An argparse ``type`` that parses and validates setting ``name`` through its spec."""
    def parse(text: str) -> object:
        try:
            return TrainSettings.spec(name).parse(name, text)
        except SettingsError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = name
    return parse


def _recipe(text: str) -> dict:
    """--recipe NAME: the settings the named recipe sets (an argparse ``type``)."""
    try:
        return recipe_values(text)
    except SettingsError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


_recipe.__name__ = "recipe"
RECIPE_HELP = ("start from a named recipe (explicit settings override it): " + "; ".join(
    f"{name}: {r.about}" for name, r in RECIPES.items()))


def _int_in(low: int, high: int):
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            v = None
        if v is None or not low <= v <= high:
            raise argparse.ArgumentTypeError(f"must be an integer in {low}..{high}, got {text!r}")
        return v
    return parse


def add_setting_flags(parser: argparse.ArgumentParser, exclude: tuple[str, ...] = ()) -> None:
    """One ``--flag`` per ``TrainSettings`` field, typed, ranged and documented by its spec."""
    for name in TrainSettings.names():
        if name in exclude:
            continue
        spec = TrainSettings.spec(name)
        flag = "--" + name.replace("_", "-")
        unit = f" [{spec.unit}]" if spec.unit else ""
        text = f"{spec.help}{unit}; {spec.describe_range()} (default {TrainSettings.default(name)})"
        if spec.kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction, default=None,
                                help=text)
        else:
            parser.add_argument(flag, dest=name, type=_setting_type(name), default=None,
                                metavar=name.upper(), help=text)


def build_parser() -> argparse.ArgumentParser:
    from cifar_app.core.model import ARCHITECTURES, DEFAULT_ARCH, NORMS

    p = argparse.ArgumentParser(prog="python -m cifar_app",
                                description="Train, compare and probe small CNNs on CIFAR-10.")
    sub = p.add_subparsers(dest="command", required=True)

    def runs_dir(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--runs-dir", default=None, help="runs folder (default $CIFAR_APP_RUNS or ./runs)")

    def data_dir(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data", default=None, help="CIFAR-10 folder (default $CIFAR_APP_DATA or ./data)")

    t = sub.add_parser("train", help="train a model (foreground, with a progress bar)")
    t.add_argument("--norm", required=True, choices=NORMS, help=TrainSettings.spec("norm").help)
    add_setting_flags(t, exclude=_NOT_FLAGS)
    t.add_argument("--recipe", type=_recipe, default={}, metavar="NAME", help=RECIPE_HELP)
    t.add_argument("--label", help="a display name for the run")
    t.add_argument("--download", action="store_true", help="download CIFAR-10 if it is not found")
    data_dir(t), runs_dir(t)
    t.set_defaults(func=cmd_train)

    w = sub.add_parser("worker", help="(internal) train a stored run; used by the dashboard")
    WorkerArgs.add_arguments(w, _int_in(1, 256))
    data_dir(w), runs_dir(w)
    w.set_defaults(func=cmd_worker)

    r = sub.add_parser("resume", help="continue a stopped or interrupted run from its checkpoint")
    r.add_argument("run")
    data_dir(r), runs_dir(r)
    r.set_defaults(func=cmd_resume)

    e = sub.add_parser("evaluate", help="test accuracy, loss and per-class accuracy of a run")
    e.add_argument("run")
    e.add_argument("--test-limit", type=_setting_type("test_limit"), default=None,
                   help="score only the first N test images (a positive integer)")
    e.add_argument("--tta", action="store_true",
                   help="average each image's prediction with its mirror image's (reported apart "
                        "from the single-view headline accuracy)")
    e.add_argument("--json", action="store_true")
    data_dir(e), runs_dir(e)
    e.set_defaults(func=cmd_evaluate)

    pr = sub.add_parser("predict", help="classify image files with a run")
    pr.add_argument("run")
    pr.add_argument("images", nargs="+", metavar="IMAGE")
    pr.add_argument("--top-k", type=_int_in(1, 10), default=5, help="classes to show, 1..10")
    pr.add_argument("--json", action="store_true")
    runs_dir(pr)
    pr.set_defaults(func=cmd_predict)

    ls = sub.add_parser("runs", help="list runs with status and best accuracy")
    ls.add_argument("--json", action="store_true")
    runs_dir(ls)
    ls.set_defaults(func=cmd_runs)

    sm = sub.add_parser("summary", help="layer table and parameter count")
    sm.add_argument("--norm", required=True, choices=NORMS)
    sm.add_argument("--groups", type=_setting_type("groups"), default=4)
    sm.add_argument("--arch", choices=list(ARCHITECTURES), default=DEFAULT_ARCH)
    sm.add_argument("--json", action="store_true")
    sm.set_defaults(func=cmd_summary)

    st = sub.add_parser("stop", help="ask a training run to stop (its checkpoint is kept)")
    st.add_argument("run")
    runs_dir(st)
    st.set_defaults(func=cmd_stop)

    d = sub.add_parser("delete", help="delete a run")
    d.add_argument("run")
    runs_dir(d)
    d.set_defaults(func=cmd_delete)

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
    sw.add_argument("--recipe", type=_recipe, default={}, metavar="NAME", help=RECIPE_HELP)
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

    ex = sub.add_parser("export", help="a run as a bundle (.zip), its model as ONNX, or its numbers as CSV")
    ex.add_argument("run")
    ex.add_argument("--format", choices=["bundle", "onnx", "csv"], required=True)
    ex.add_argument("--out", required=True, help="file (bundle, onnx) or folder (csv; any format)")
    data_dir(ex), runs_dir(ex)
    ex.set_defaults(func=cmd_export)

    im = sub.add_parser("import", help="add a run from a bundle exported by this app")
    im.add_argument("bundle")
    runs_dir(im)
    im.set_defaults(func=cmd_import)

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
    bd.add_argument("--test-limit", type=_setting_type("test_limit"), default=None)
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
    sv.add_argument("--port", type=_int_in(1, 65535), default=8501)
    sv.add_argument("--revoke-keys", action="store_true",
                    help="first make every browser's access cookie invalid (the token stays the same)")
    sv.set_defaults(func=cmd_serve)

    dl = sub.add_parser("download", help="download CIFAR-10 with torchvision")
    data_dir(dl)
    dl.set_defaults(func=cmd_download)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (DataError, SettingsError, RunNotFound, ReadOnlyRun, RunDamaged, StoreError, BundleError,
            ExperimentNotFound, FileNotFoundError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # anything else the file system refuses: one line, not a traceback
        where = f" {e.filename}" if e.filename else ""
        print(f"error: cannot access{where}: {e.strerror or e}", file=sys.stderr)
        return 2
