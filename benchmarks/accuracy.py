"""Reproduce the headline accuracy runs and write a results table (JSON + Markdown).

    python benchmarks/accuracy.py --data PATH --runs-dir runs-accuracy --out results
    python benchmarks/accuracy.py --norms batch --epochs 5 --set max_lr=0.1 --set cutout=8  # a proxy

Each norm is trained with the project's default recipe (``TrainSettings()``) unless ``--set`` overrides
a field; ``--jobs N`` trains N runs at once (useful on a GPU, where one small run leaves it idle).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import time
from pathlib import Path

from cifar_app.core.data import load_cifar10
from cifar_app.core.engine import select_device
from cifar_app.core.settings import TrainSettings, parse_grid, parse_setting
from cifar_app.store.jobs import execute_run
from cifar_app.store.runstore import RunStore


def device_name(device: str) -> str:
    import torch

    dev = select_device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(0)
    return f"{dev.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def run_one(job: tuple[dict, str, str, str]) -> dict:
    overrides, data_dir, runs_dir, tag = job
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    settings = TrainSettings.from_dict(overrides)
    store = RunStore(runs_dir, reference_root=None)
    run = store.create(settings, label=tag)
    t0 = time.time()
    execute_run(store, run.id, data=lambda progress=None: load_cifar10(data_dir, progress=progress))
    epochs = run.metrics().epochs
    best = max(epochs, key=lambda r: r.test_acc)
    return {
        "tag": tag, "run_id": run.id, "norm": settings.norm, "params": settings.param_count(),
        "settings": settings.to_dict(), "best_test_acc": best.test_acc, "best_epoch": best.epoch,
        "final_test_acc": epochs[-1].test_acc, "final_train_acc": epochs[-1].train_acc,
        "seconds_per_epoch": sum(r.seconds for r in epochs) / len(epochs),
        "images_per_s": sum(r.images_per_s for r in epochs) / len(epochs),
        "wall_seconds": time.time() - t0, "device": device_name(settings.device),
    }


def markdown(rows: list[dict]) -> str:
    head = ("| run | norm | params | final test acc | best test acc (epoch) | final train acc "
            "| s/epoch | images/s | device |\n|---|---|---|---|---|---|---|---|---|\n")
    return head + "".join(
        f"| {r['tag']} | {r['norm']} | {r['params']:,} | {100 * r['final_test_acc']:.2f}% "
        f"| {100 * r['best_test_acc']:.2f}% ({r['best_epoch']}) | {100 * r['final_train_acc']:.2f}% "
        f"| {r['seconds_per_epoch']:.1f} | {r['images_per_s']:.0f} | {r['device']} |\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--norms", default="batch,group,layer,none")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--data", default=None, help="CIFAR-10 folder (default $CIFAR_APP_DATA or ./data)")
    p.add_argument("--runs-dir", default="runs-accuracy")
    p.add_argument("--out", default="benchmarks/results", help="folder for accuracy.json / .md")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a TrainSettings field for every run (repeatable)")
    p.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                   help="also sweep a field over values (repeatable; runs the cross product)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--name", default="accuracy")
    args = p.parse_args(argv)

    base: dict = {}
    for item in args.set:
        k, _, v = item.partition("=")
        base[k] = parse_setting(k, v)
    if args.epochs is not None:
        base["epochs"] = args.epochs
    variants: list[dict] = [{}]
    for item in args.grid:
        k, values = parse_grid(item)
        variants = [{**v, k: x} for v in variants for x in values]
    jobs = []
    for norm in args.norms.split(","):
        for v in variants:
            overrides = {**base, **v, "norm": norm}
            tag = norm + "".join(f" {k}={x}" for k, x in v.items())
            TrainSettings.from_dict(overrides)  # fail fast on a bad field
            jobs.append((overrides, args.data, args.runs_dir, tag))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    if args.jobs > 1:
        with mp.get_context("spawn").Pool(args.jobs) as pool:
            for row in pool.imap_unordered(run_one, jobs):
                rows.append(row)
                print(json.dumps(row), flush=True)
    else:
        for job in jobs:
            rows.append(run_one(job))
            print(json.dumps(rows[-1]), flush=True)
    rows.sort(key=lambda r: r["tag"])
    (out / f"{args.name}.json").write_text(json.dumps(rows, indent=1))
    (out / f"{args.name}.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
