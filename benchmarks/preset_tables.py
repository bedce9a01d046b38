"""The docs' preset tables, computed from the results files: the shipped ones
(``cifar_app/store/reference_experiments/preset_*.json``) and variants in ``benchmarks/results/``.

    python benchmarks/preset_tables.py                 # print every table
    python benchmarks/preset_tables.py --readme README.md

``--readme`` rewrites each block between ``<!-- preset-table NAME -->`` and
``<!-- /preset-table NAME -->`` (NAME: a results file's name without ``preset_`` and ``.json``, e.g.
``batch-size`` or ``batch-size_seed-plain``), so the README's figures are the stored results'.
Accuracies are final single-view test accuracies; several seeds give ``a / b`` and their mean.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

from cifar_app.core.norms import NORMS
from cifar_app.lab.claims.evidence import COLLAPSED
from cifar_app.lab.claims.optimization import matched_fit, probe_summary, train_test_gap
from cifar_app.lab.presets import PRESETS
from cifar_app.store.results import REFERENCE_EXPERIMENTS, ExperimentResults, PointResult, ResultsDamaged
from cifar_app.store.states import RunState
from cifar_app.web.tables import fill_blocks, markdown_table

RESULTS = Path(__file__).parent / "results"
SHORT = {"batch": "BatchNorm", "group": "GroupNorm", "layer": "LayerNorm", "none": "none",
         "layer-chw": "seed's LayerNorm([C, H, W]), no affine", "instance": "InstanceNorm"}


def _norm_order(norms) -> list[str]:
    return sorted(norms, key=lambda n: NORMS.index(n) if n in NORMS else len(NORMS))


def _acc(p: PointResult) -> str:
    if p.state != RunState.COMPLETED or p.final_test_acc is None:
        return str(p.state)  # e.g. failed: the loss became NaN (the run's error says so)
    return f"{100 * p.final_test_acc:.2f}%"


def _cells(points: list[PointResult]) -> tuple[str, float | None]:
    """A cell's text (one seed: its accuracy; several: ``a / b (mean)``) and the mean for bolding."""
    points = sorted(points, key=lambda p: p.settings["seed"])
    accs = [p.final_test_acc for p in points if p.state == RunState.COMPLETED]
    mean = statistics.fmean(accs) if accs else None
    if len(points) == 1:
        return _acc(points[0]), mean
    text = " / ".join(_acc(p).rstrip("%") for p in points) + "%"
    return (f"{text} ({100 * mean:.2f})" if mean is not None else text), mean


def grid_table(res: ExperimentResults, rows: str, cols: str, col_name: Callable[[object], str] = str,
               corner: str = "final test accuracy") -> str:
    """Rows by one settings field, columns by another; each row's best mean in bold."""
    cells: dict[tuple, list[PointResult]] = {}
    for p in res.points:
        cells.setdefault((p.settings[rows], p.settings[cols]), []).append(p)
    row_keys = _norm_order({r for r, _ in cells}) if rows == "norm" else sorted({r for r, _ in cells})
    col_keys = sorted({c for _, c in cells})
    rows_out = []
    for r in row_keys:
        texts = {c: _cells(cells[(r, c)]) for c in col_keys if (r, c) in cells}
        best = max((m for _, m in texts.values() if m is not None), default=None)
        rows_out.append([SHORT.get(r, r)] + [f"**{t}**" if m is not None and m == best else t
                                             for c in col_keys for t, m in [texts.get(c, ("", None))]])
    return markdown_table([corner] + [col_name(c) for c in col_keys], rows_out)


def groups_table(res: ExperimentResults) -> str:
    """GroupNorm's G, with InstanceNorm (G = C) as the last column; one row per seed and the mean."""
    by: dict[str, dict[int, float]] = {}
    for p in res.completed():
        key = "G = C (IN)" if p.settings["norm"] == "instance" else (
            "G = 1 (LN)" if p.settings["groups"] == 1 else f"G = {p.settings['groups']}")
        by.setdefault(key, {})[p.settings["seed"]] = p.final_test_acc
    keys = sorted(by, key=lambda k: (k == "G = C (IN)", int(k.split()[2]) if k[4:5].isdigit() else 0))
    seeds = sorted({s for v in by.values() for s in v})
    means = {k: statistics.fmean(by[k].values()) for k in keys}
    best = max(means.values())
    per_seed = [" / ".join(f"{100 * by[k][s]:.2f}" for s in seeds if s in by[k]) + "%" for k in keys]
    mean = [f"**{100 * means[k]:.2f}%**" if means[k] == best else f"{100 * means[k]:.2f}%" for k in keys]
    return markdown_table([f"test accuracy, {len(seeds)} seeds", *keys],
               [[" / ".join(f"seed {s}" for s in seeds), *per_seed], ["mean", *mean]])


def seeds_row_table(res: ExperimentResults) -> str:
    """One row per norm: each seed's accuracy and mean ± std; for a norm with failed (diverged)
    seeds, the mean of the seeds that trained and how many diverged (a mean with them at chance,
    as a verdict's input, would describe no seed)."""
    by: dict[str, dict[int, PointResult]] = {}
    for p in res.points:
        by.setdefault(p.settings["norm"], {})[p.settings["seed"]] = p
    seeds = sorted({s for v in by.values() for s in v})
    rows = []
    for n in _norm_order(by):
        failed = sum(p.state == RunState.FAILED for p in by[n].values())
        accs = [p.final_test_acc for p in by[n].values()
                if p.state == RunState.COMPLETED and p.final_test_acc is not None]
        spread = (f"**{100 * statistics.fmean(accs):.2f} ± {100 * statistics.stdev(accs):.2f}**"
                  if len(accs) > 1 else f"**{100 * accs[0]:.2f}**" if accs and failed else "")
        if failed:
            spread += f" ({len(accs)} trained, {failed} of {len(by[n])} diverged)"
        rows.append([SHORT.get(n, n), *(_acc(by[n][s]) if s in by[n] else "" for s in seeds), spread])
    return markdown_table(["final test accuracy", *(f"seed {s}" for s in seeds), "mean ± std"], rows)


def landscape_table(res: ExperimentResults) -> str:
    """Per norm, mean ± std over seeds of each run's ``claims.optimization.probe_summary`` (the probes the ICS
    claim reads: after step 0, at η ≥ a tenth of the peak; per unit step where it says so)."""
    by: dict[str, list[dict]] = {}
    acc: dict[str, list[float]] = {}
    for p in res.completed():
        if p.landscape and (summary := probe_summary(p.landscape, p.settings["max_lr"])) is not None:
            by.setdefault(p.settings["norm"], []).append(summary)
            acc.setdefault(p.settings["norm"], []).append(p.final_test_acc)
    norms = _norm_order(by)
    n_seeds = min(len(v) for v in by.values())

    def ms(xs: list[float], fmt: str) -> str:
        return f"{statistics.fmean(xs):{fmt}}" + (f" ± {statistics.stdev(xs):{fmt}}" if len(xs) > 1 else "")

    probes = [("ICS per unit step, ‖G − G′‖/‖G‖ ÷ η‖g‖ (the claim's measure)", "ics_per_step", ".3g"),
              ("ICS, 1 − cos(G, G′), mean over the C blocks", "ics_1_minus_cos", ".3f"),
              ("effective β-smoothness (per unit distance)", "beta", ".3g"),
              ("loss range along the gradient, per unit distance", "loss_range_per_step", ".3g"),
              ("step length η‖g‖", "step_length", ".3g")]
    rows = [["test accuracy", *(f"{100 * statistics.fmean(acc[n]):.2f}%" for n in norms)]]
    rows += [[name, *(ms([r[key] for r in by[n]], fmt) for n in norms)] for name, key, fmt in probes]
    corner = f"median over the probes kept, {n_seeds} seeds"
    return markdown_table([corner, *(SHORT.get(n, n) for n in norms)], rows)


def regularization_table(res: ExperimentResults) -> str:
    """Train accuracy (last epoch), test accuracy and their gap, by norm; collapsed runs counted."""
    train: dict[str, list[float]] = {}
    test: dict[str, list[float]] = {}
    gap: dict[str, list[float]] = {}
    collapsed: dict[str, int] = {}
    for p in res.completed():
        n = p.settings["norm"]
        if p.final_test_acc <= COLLAPSED:
            collapsed[n] = collapsed.get(n, 0) + 1
            continue
        last = p.epochs[-1]
        train.setdefault(n, []).append(last.get("train_eval_acc") or last["train_acc"])
        test.setdefault(n, []).append(p.final_test_acc)
        gap.setdefault(n, []).append(train_test_gap(p))
    norms = _norm_order(set(train) | set(collapsed))

    def pct(d: dict, n: str) -> str:
        return f"{100 * statistics.fmean(d[n]):.1f}%" if d.get(n) else "—"

    def g(n: str) -> str:
        xs = gap.get(n) or []
        if not xs:
            return "—"
        sd = f" ± {100 * statistics.stdev(xs):.1f}" if len(xs) > 1 else ""
        return f"**{100 * statistics.fmean(xs):.1f}{sd}**"

    rows = [["train accuracy (last epoch; eval mode where recorded)", *(pct(train, n) for n in norms)],
            ["test accuracy", *(pct(test, n) for n in norms)],
            ["gap at the end, points", *(g(n) for n in norms)]]
    curves: dict[str, list[list[dict]]] = {}
    for p in res.completed():
        if p.epochs and p.final_test_acc > COLLAPSED:
            curves.setdefault(p.settings["norm"], []).append(p.epochs)
    if len(curves.get("batch", [])) >= 2 and len(curves.get("none", [])) >= 2:  # what the claim compares
        level, _, matched = matched_fit(curves)
        gap.clear()
        gap.update(matched)
        rows.append([f"gap at matched fit ({100 * level:.1f}% train accuracy), points",
                     *(g(n) for n in norms)])
    if collapsed:
        rows.append(["runs collapsed to chance (left out)", *(str(collapsed.get(n, 0)) for n in norms)])
    return markdown_table(["mean over seeds", *(SHORT.get(n, n) for n in norms)], rows)


def table(name: str, res: ExperimentResults) -> str:
    preset = res.preset or name.split("_")[0]
    if preset == "batch-size":
        return grid_table(res, "norm", "batch_size")
    if preset == "learning-rate":
        return grid_table(res, "norm", "max_lr")
    if preset == "groups":
        return groups_table(res)
    if preset == "landscape":
        return landscape_table(res)
    if preset == "regularization":
        return regularization_table(res)
    if preset in ("seed-layernorm", "seeds", "bf16-seeds"):
        return seeds_row_table(res)
    return grid_table(res, "norm", PRESETS[preset].x)


def results_path(name: str, folder: Path = RESULTS) -> Path:
    """Where the results file ``preset_<name>.json`` is: in ``folder`` (a variant measured for the
    docs, or one's own), else among the results shipped with the app (their one copy)."""
    path = folder / f"preset_{name}.json"
    return path if path.exists() else REFERENCE_EXPERIMENTS / f"preset_{name}.json"


def load(name: str, folder: Path = RESULTS) -> ExperimentResults:
    """A results file's results; a damaged or truncated one stops the script with one line naming it."""
    path = results_path(name, folder)
    try:
        return ExperimentResults.load(path)
    except ResultsDamaged as e:
        raise SystemExit(f"error: {path}: not a readable results file ({e.why})") from None


def _num(v: float | None, fmt: str = "+.3g") -> str:
    return "—" if v is None else f"{v:{fmt}}"


def claims_table(folder: Path = REFERENCE_EXPERIMENTS) -> str:
    """Per claim, what ``claims.evaluate`` says on a fresh store from the results files in
    ``folder``: the verdict, the deciding effect with its 95% interval, n per arm, the minimum
    detectable effect and the paper's effect."""
    import tempfile

    from cifar_app.lab.claims import evaluate
    from cifar_app.store.runstore import RunStore

    with tempfile.TemporaryDirectory() as tmp:
        rows = evaluate(RunStore(Path(tmp) / "runs"), shipped=folder)
    out = []
    for r in rows:
        unit = r["unit"]
        if r["effect"] is None:
            effect = ci = n = mde = "—"
        else:
            effect = f"{r['effect']:+.3g} {unit}".strip()
            low, high = r["ci95"]
            ci = f"[{_num(low) if low is not None else '−∞'}, {_num(high) if high is not None else '+∞'}]"
            n = " vs ".join(map(str, r["n"]))
            mde = _num(r["mde"], ".3g") if r["mde"] is not None else "none reachable"
        paper = r["paper"]
        pe = "—" if not paper else f"{paper['text']} ({paper['source']})"
        if paper and paper["effect"] is not None:
            pe = f"{paper['effect']:.3g}: {pe}"
        out.append([r["id"], f"**{r['verdict']}**", effect, ci, n, mde, pe, r["evidence_kind"]])
    return markdown_table(["claim", "verdict", "effect", "95% interval", "n per arm", "MDE (80% power)",
                           "paper's effect", "evidence"], out)


def compute_table(folder: Path = REFERENCE_EXPERIMENTS) -> str:
    """What each shipped preset cost, from its results file: points, the points' own seconds (one
    thread each), the runner's wall time (two points at a time), the arithmetic its points asked for,
    and when it was measured."""
    import datetime
    import json

    out = []
    for path in sorted(folder.glob("preset_*.json")):
        d = json.loads(path.read_text())
        points = d.get("points", [])
        secs = sum(p.get("seconds") or 0 for p in points)
        wall = d.get("wall_seconds")
        precisions = sorted({str(p["settings"].get("precision", "auto")) for p in points})
        when = (datetime.datetime.fromtimestamp(d["created"], datetime.UTC).strftime("%Y-%m-%d")
                if d.get("created") else "—")
        out.append([path.stem.removeprefix("preset_"), str(len(points)), f"{secs:,.0f}",
                    f"{wall / 60:.1f} min" if wall else "—", ", ".join(precisions), when])
    return markdown_table(["preset", "points", "point-seconds", "wall", "precision asked", "measured"], out)


def batchdep_table() -> str:
    """Batch dependence at inference of the shipped reference runs (their cached ``batchdep.json``):
    test accuracy in eval mode, with each test batch's own statistics, and with PreciseBN."""
    import tempfile

    from cifar_app.lab.batchdep_record import BatchDependence
    from cifar_app.store.runstore import RunStore

    with tempfile.TemporaryDirectory() as tmp:
        refs = [r for r in RunStore(Path(tmp) / "runs").list() if r.reference]
        rows, sizes = [], None
        for run in refs:
            cached = run.load_result("batchdep")
            if cached is None:
                continue
            r = BatchDependence.from_dict(cached)
            sizes = sizes or sorted(r.batch_stats)
            rows.append([SHORT.get(run.settings().norm, run.settings().norm), f"{100 * r.eval_acc:.2f}%",
                         *(f"{100 * r.batch_stats[k]:.2f}%" for k in sizes),
                         "—" if r.precise_bn_acc is None else f"{100 * r.precise_bn_acc:.2f}%"])
    return markdown_table(["test accuracy", "eval mode", *(f"batch {k}" for k in sizes or []),
                           "PreciseBN"], rows)


def fill(readme: str, folder: Path = RESULTS) -> str:
    """The README text with every preset-table block recomputed from its results file."""
    def one(name: str) -> str | None:
        if not results_path(name, folder).exists():
            print(f"warning: no preset_{name}.json: the {name} table is left as it is",
                  file=sys.stderr)
            return None
        return table(name, load(name, folder))
    readme = fill_blocks(readme, "preset-table", one, named=True)
    for marker, make in (("compute-table", compute_table), ("batchdep-table", batchdep_table),
                         ("claims-table", claims_table)):
        readme = fill_blocks(readme, marker, lambda _, make=make: make())
    return readme


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readme", help="rewrite this file's preset-table blocks")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--check", action="store_true",
                   help="with --readme: change nothing, exit 1 when a table differs from its results file")
    args = p.parse_args(argv)
    folder = Path(args.results)
    if args.readme:
        path = Path(args.readme)
        text = path.read_text(encoding="utf-8")
        new = fill(text, folder)
        if args.check:
            if new != text:
                print(f"{path}: a table differs from its results file; run "
                      f"python benchmarks/preset_tables.py --readme {path}", file=sys.stderr)
                return 1
            print(f"{path}: every table matches its results file")
            return 0
        path.write_text(new, encoding="utf-8")
        print(f"-> {path}")
        return 0
    for f in sorted(folder.glob("preset_*.json")):
        name = f.stem.removeprefix("preset_")
        print(f"## {name}\n\n{table(name, load(name, folder))}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
