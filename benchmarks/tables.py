"""Every generated table of the README and ``docs/``, from the results files.

    python benchmarks/tables.py            # rewrite every generated block
    python benchmarks/tables.py --check    # change nothing; exit 1 naming each file whose tables differ

A generated block sits between ``<!-- NAME ... -->`` and ``<!-- /NAME ... -->`` markers. The preset
and claims tables come from ``preset_tables.py`` (the shipped results), the recipe study's from
``recipe_tables.py``, the benchmarks' from ``result_tables.py``; they read ``benchmarks/results/`` and
``cifar_app/store/reference_experiments/``.
CI runs ``--check``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fill(text: str) -> str:
    """``text`` with every generated block recomputed."""
    for name in ("preset_tables", "recipe_tables", "result_tables"):
        text = _load(name).fill(text)
    return text


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when a table differs")
    args = p.parse_args(argv)
    stale = []
    for path in FILES:
        text = path.read_text(encoding="utf-8")
        new = fill(text)
        if new == text:
            continue
        if args.check:
            stale.append(path)
        else:
            path.write_text(new, encoding="utf-8")
            print(f"-> {path.relative_to(ROOT)}")
    for path in stale:
        print(f"{path.relative_to(ROOT)}: a generated table differs from its results file; run "
              "python benchmarks/tables.py", file=sys.stderr)
    if args.check and not stale:
        print(f"every generated table matches its results file ({len(FILES)} files)")
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
