"""Command line: ``python -m cifar_app {train,evaluate,predict,runs,summary,...}``."""

from __future__ import annotations

import argparse
import sys

from cifar_app.cli import lab, runs
from cifar_app.core.data import DataError
from cifar_app.core.settings import SettingsError
from cifar_app.lab.experiments import ExperimentNotFound
from cifar_app.store.export import BundleError
from cifar_app.store.fileio import StoreError
from cifar_app.store.run import ReadOnlyRun, RunDamaged, RunNotFound


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cifar_app",
                                description="Train, compare and probe small CNNs on CIFAR-10.")
    sub = p.add_subparsers(dest="command", required=True)
    runs.add_parsers(sub)
    lab.add_parsers(sub)
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
