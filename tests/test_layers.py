"""The layers hold: ``lint-imports`` (import-linter, contracts in ``pyproject.toml``) passes on the
package, and fails on a copy of it with one upward import planted inside a function."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache", "--config"]


def lint(package_parent: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run([*LINT, str(ROOT / "pyproject.toml")], cwd=package_parent, env=env,
                          capture_output=True, text=True, timeout=120)


def copy_of_the_package(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "cifar_app", tmp_path / "cifar_app",
                    ignore=shutil.ignore_patterns("__pycache__", "reference_*"))
    return tmp_path


def test_the_package_keeps_its_layers_and_has_no_cycle(tmp_path):
    out = lint(copy_of_the_package(tmp_path))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


@pytest.mark.parametrize("module,planted", [
    ("core/norms.py", "from cifar_app.store import runstore"),       # core -> store
    ("store/runstore.py", "from cifar_app.lab.claims import evaluate"),  # store -> lab
    ("lab/experiments.py", "from cifar_app.web import ui"),             # lab -> web
])
def test_a_planted_upward_import_breaks_the_layers(tmp_path, module, planted):
    parent = copy_of_the_package(tmp_path)
    target = parent / "cifar_app" / module
    assert target.is_file(), target  # planted in a real module, not a new one
    with target.open("a") as f:  # inside a function: no escape
        f.write(f"\n\ndef _planted():\n    {planted}\n")
    out = lint(parent)
    assert out.returncode != 0 and "BROKEN" in out.stdout, out.stdout + out.stderr


def test_a_planted_cycle_inside_one_layer_breaks_the_acyclic_contract(tmp_path):
    parent = copy_of_the_package(tmp_path)
    with (parent / "cifar_app" / "core" / "norms.py").open("a") as f:  # model imports norms already
        f.write("\n\ndef _planted():\n    from cifar_app.core import model\n")
    out = lint(parent)
    broken = "No import cycle among modules of one package BROKEN"
    assert out.returncode != 0 and broken in out.stdout, out.stdout
