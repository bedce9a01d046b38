"""Where an experiment's points run: the one dispatch on its backend (the CLI's ``sweep`` and the
dashboard's ``sweep-worker`` both come here)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cifar_app.core.data import CifarData, default_data_dir
from cifar_app.lab.experiments import ExperimentStore, run_experiment


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
