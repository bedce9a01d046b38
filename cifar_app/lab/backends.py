"""Where an experiment's points run: the one dispatch on its backend (the CLI's ``sweep`` and the
dashboard's ``sweep-worker`` both come here), and starting a sweep as its own process."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cifar_app.core.data import CifarData, default_data_dir
from cifar_app.lab.experiments import ExperimentStore, run_experiment
from cifar_app.store.jobs import spawn_cli


def run_sweep(exps: ExperimentStore, exp_id: str, load_data: Callable[[], CifarData],
              data_dir: Path | str | None, ray_address: str | None = None,
              on_point: Callable | None = None) -> None:
    """Run an experiment's missing points on its backend: ``local`` trains them here (``load_data``
    gives the dataset; ``data_dir`` or the default is what its workers load), ``ray`` sends one task
    per point to the cluster at ``ray_address`` (else the experiment's own; a worker loads its own
    copy from ``data_dir`` when it has one)."""
    exp = exps.get(exp_id)
    if exp.backend == "ray":
        from cifar_app.lab.ray_backend import run_experiment_on_ray

        run_experiment_on_ray(exps, exp.id, address=ray_address or exp.ray_address, data_dir=data_dir,
                              on_point=on_point)
    else:
        run_experiment(exps, exp.id, data=load_data(), data_dir=data_dir or default_data_dir(),
                       on_point=on_point)


@dataclass(frozen=True)
class SweepWorkerArgs:
    """``python -m cifar_app sweep-worker``'s command line, owned here for both sides like
    ``store.jobs.WorkerArgs``: ``start_experiment`` builds it, the CLI declares and reads it."""

    experiment: str
    runs_dir: str | None = None
    data: str | None = None
    ray_address: str | None = None

    def argv(self) -> list[str]:
        args = ["sweep-worker", self.experiment]
        args += ["--runs-dir", self.runs_dir] if self.runs_dir is not None else []
        args += ["--data", self.data] if self.data is not None else []
        return args + (["--ray-address", self.ray_address] if self.ray_address else [])

    @staticmethod
    def add_arguments(p) -> None:
        p.add_argument("experiment")
        p.add_argument("--ray-address", default=None)

    @classmethod
    def from_namespace(cls, ns) -> SweepWorkerArgs:
        return cls(ns.experiment, ns.runs_dir, ns.data, ns.ray_address)


def start_experiment(exps: ExperimentStore, exp_id: str, data_dir: Path | str | None = None,
                     ray_address: str | None = None) -> subprocess.Popen:
    """Start ``python -m cifar_app sweep-worker EXP`` detached (the Experiments page's Start and
    Resume): it runs the missing points of an ``experiments.ExperimentStore`` experiment."""
    exps.clear_stop(exp_id)
    args = SweepWorkerArgs(exp_id, str(exps.runs.root), None if data_dir is None else str(data_dir),
                           ray_address or None).argv()
    proc = spawn_cli(args, exps.log_path(exp_id))
    exps.mark_started(exp_id, proc.pid)
    return proc
