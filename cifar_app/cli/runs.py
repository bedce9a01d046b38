"""The CLI's verbs about runs: train one, follow, stop, resume, evaluate, predict, list, export and
import them, and get the data."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from cifar_app.cli.common import (
    NOT_FLAGS,
    RECIPE_HELP,
    add_setting_flags,
    data_dir,
    int_in,
    loader,
    open_store,
    pct,
    recipe_arg,
    runs_dir,
    setting_type,
)
from cifar_app.core.data import DataError, default_data_dir, download_cifar10, load_cifar10, require_dataset
from cifar_app.core.settings import TrainSettings
from cifar_app.store.jobs import WorkerArgs
from cifar_app.store.states import ACTIVE, RunState


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from cifar_app.core.records import BatchStats
    from cifar_app.store.jobs import execute_run

    given = {name: getattr(args, name) for name in TrainSettings.names()
             if getattr(args, name, None) is not None}
    settings = TrainSettings(**{**args.recipe, **given}).validate()
    if not args.download:
        require_dataset(args.data)  # fail before a run is created
    store = open_store(args)
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
                       f"acc {pct(event.train_acc)}  test loss {event.test_loss:.4f} acc "
                       f"{pct(event.test_acc)}  {event.seconds:.1f}s  {event.images_per_s:.0f} img/s",
                       file=sys.stderr)

    try:
        execute_run(store, run.id, data=loader(args.data, args.download), progress=progress)
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
    print(f"{run.id}\tfinal test accuracy {pct(summary.final_test_acc)}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from cifar_app.store.jobs import execute_run

    w = WorkerArgs.from_namespace(args)
    if w.threads is not None:
        import torch

        torch.set_num_threads(w.threads)
    execute_run(open_store(args), w.run, data=loader(w.data, bar=False), resume=w.resume,
                slot_held=w.slot_held)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from cifar_app.store.jobs import can_resume, execute_run

    store = open_store(args)
    run = store.get(args.run)
    if (damage := run.damage()) is not None:
        raise damage
    if not can_resume(run):
        print(f"error: {run.id} is {run.state()}; only stopped, failed or "
              "interrupted runs can be resumed", file=sys.stderr)
        return 2
    run.clear_stop()  # the user's resume: an old stop request no longer applies
    execute_run(store, run.id, data=loader(args.data), resume=True)
    summary = run.summary()
    if summary.status == RunState.STOPPED:
        print(f"{run.id}\tstopped after {summary.epoch} epochs")
        return 0
    print(f"{run.id}\tfinal test accuracy {pct(summary.final_test_acc)}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from cifar_app.lab.analysis import evaluate_model, per_class_accuracy
    from cifar_app.store.inference import load_model

    run = open_store(args).get(args.run)
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
        print(f"{run.id}: accuracy {pct(ev.accuracy)}, loss {ev.loss:.4f} on {ev.labels.size:,} "
              f"test images{tta} ({data.source}); {result['params']:,} parameters")
        for c, a in result["per_class"].items():
            print(f"  {c:<11} {pct(a)}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from cifar_app.store.inference import ImageError, classify_each, load_model

    loaded = load_model(open_store(args).get(args.run))
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
                best = ", ".join(f"{t['class']} {pct(t['prob'])}" for t in item["top_k"])
                print(f"{item['file']}: {best}")
    return 1 if failed else 0


def cmd_runs(args: argparse.Namespace) -> int:
    store = open_store(args)
    rows = store.summaries()
    if store.index_notice:
        print(f"note: {store.index_notice}", file=sys.stderr)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows]))  # no indent: the C encoder (10,000 runs)
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
              f"{pct(r.best_test_acc):>9}  {label}")
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
    run = open_store(args).get(args.run)
    state = run.state()
    if state not in ACTIVE:
        print(f"error: {run.id} is {state}, not training; nothing to stop", file=sys.stderr)
        return 2
    run.request_stop()
    print(f"stop requested for {run.id}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    open_store(args).delete(args.run)
    print(f"deleted {args.run}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from cifar_app.store.export import export_bundle, export_csv
    from cifar_app.store.onnx import export_onnx

    run = open_store(args).get(args.run)
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

    run = import_bundle(open_store(args), args.bundle, origin=Path(args.bundle).name)
    print(f"imported as {run.id} ({run.label})")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    root = download_cifar10(args.data)
    print(f"CIFAR-10 is in {root}")
    return 0


def add_parsers(sub) -> None:
    """The verbs about runs: train, worker, resume, evaluate, predict, runs, summary, stop, delete,
    export, import, download."""
    from cifar_app.core.architectures import ARCHITECTURES, DEFAULT_ARCH, NORMS

    t = sub.add_parser("train", help="train a model (foreground, with a progress bar)")
    t.add_argument("--norm", required=True, choices=NORMS, help=TrainSettings.spec("norm").help)
    add_setting_flags(t, exclude=NOT_FLAGS)
    t.add_argument("--recipe", type=recipe_arg, default={}, metavar="NAME", help=RECIPE_HELP)
    t.add_argument("--label", help="a display name for the run")
    t.add_argument("--download", action="store_true", help="download CIFAR-10 if it is not found")
    data_dir(t), runs_dir(t)
    t.set_defaults(func=cmd_train)

    w = sub.add_parser("worker", help="(internal) train a stored run; used by the dashboard")
    WorkerArgs.add_arguments(w, int_in(1, 256))
    data_dir(w), runs_dir(w)
    w.set_defaults(func=cmd_worker)

    r = sub.add_parser("resume", help="continue a stopped or interrupted run from its checkpoint")
    r.add_argument("run")
    data_dir(r), runs_dir(r)
    r.set_defaults(func=cmd_resume)

    e = sub.add_parser("evaluate", help="test accuracy, loss and per-class accuracy of a run")
    e.add_argument("run")
    e.add_argument("--test-limit", type=setting_type("test_limit"), default=None,
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
    pr.add_argument("--top-k", type=int_in(1, 10), default=5, help="classes to show, 1..10")
    pr.add_argument("--json", action="store_true")
    runs_dir(pr)
    pr.set_defaults(func=cmd_predict)

    ls = sub.add_parser("runs", help="list runs with status and best accuracy")
    ls.add_argument("--json", action="store_true")
    runs_dir(ls)
    ls.set_defaults(func=cmd_runs)

    sm = sub.add_parser("summary", help="layer table and parameter count")
    sm.add_argument("--norm", required=True, choices=NORMS)
    sm.add_argument("--groups", type=setting_type("groups"), default=4)
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

    dl = sub.add_parser("download", help="download CIFAR-10 with torchvision")
    data_dir(dl)
    dl.set_defaults(func=cmd_download)
