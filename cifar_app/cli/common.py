"""What the CLI's verbs share: the store and data they open, and the flags every verb takes."""

from __future__ import annotations

import argparse
import math
import sys

from cifar_app.core.data import load_cifar10
from cifar_app.core.settings import RECIPES, SettingsError, TrainSettings, recipe_values
from cifar_app.store.runstore import RunStore

# Settings the CLI does not offer as flags of ``train`` (``--norm`` is required, so it is added apart).
NOT_FLAGS = ("norm",)


def pct(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.2f}%"


def open_store(args: argparse.Namespace) -> RunStore:
    return RunStore(args.runs_dir)


def loader(data_dir: str | None, download: bool = False, bar: bool = True):
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


def setting_type(name: str):
    """An argparse ``type`` that parses and validates setting ``name`` through its spec."""
    def parse(text: str) -> object:
        try:
            return TrainSettings.spec(name).parse(name, text)
        except SettingsError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = name
    return parse


def recipe_arg(text: str) -> dict:
    """--recipe NAME: the settings the named recipe sets (an argparse ``type``)."""
    try:
        return recipe_values(text)
    except SettingsError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
RECIPE_HELP = ("start from a named recipe (explicit settings override it): " + "; ".join(
    f"{name}: {r.about}" for name, r in RECIPES.items()))


def int_in(low: int, high: int):
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
            parser.add_argument(flag, dest=name, type=setting_type(name), default=None,
                                metavar=name.upper(), help=text)


recipe_arg.__name__ = "recipe"


def runs_dir(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--runs-dir", default=None, help="runs folder (default $CIFAR_APP_RUNS or ./runs)")


def data_dir(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--data", default=None, help="CIFAR-10 folder (default $CIFAR_APP_DATA or ./data)")
