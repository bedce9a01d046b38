"""The README's recipe-study tables, computed from the results files (``benchmarks/results``).

    python benchmarks/recipe_tables.py                 # print them
    python benchmarks/recipe_tables.py --readme README.md

``--readme`` rewrites the blocks between ``<!-- lever-table -->`` / ``<!-- /lever-table -->`` (each
lever's measured effect: the architecture in reduced form from ``preset_recipe-arch.json``, at full
scale from ``recipe_separable-b.json`` against the seed-plain seeds, and one row per other
``recipe_<candidate>.json`` against the default) and ``<!-- distill-table -->`` (the distilled
students against the default's seeds, with their lead over the epochs).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from cifar_app.store.results import REFERENCE_EXPERIMENTS
from cifar_app.web.tables import fill_blocks, markdown_table

RESULTS = Path(__file__).parent / "results"
NORMS = ("batch", "group", "layer")
SHORT = {"batch": "BN", "group": "GN", "layer": "LN"}
FULL = "recipe_separable-b.json"  # the default's seeds: every other lever is compared with them


def _load(folder: Path, name: str) -> dict | None:
    """A results file (None when absent); a damaged one stops the script with one line naming it."""
    path = folder / name
    if not path.exists():  # a shipped result has its one copy in the package
        path = REFERENCE_EXPERIMENTS / name
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise SystemExit(f"error: {path}: not a readable results file ({e})") from None


def _final(points: list[dict], key: str) -> dict[str, list[float]]:
    """Per norm, the completed points' last-epoch ``key`` (test_acc or train_acc)."""
    out: dict[str, list[float]] = {}
    for p in points:
        if p["status"] == "completed" and p.get("epochs"):
            out.setdefault(p["settings"]["norm"], []).append(p["epochs"][-1][key])
    return out


def _diff(row: dict | None, bold: bool = False) -> str:
    if row is None:
        return "—"
    text = f"{100 * row['difference']:+.2f} ({100 * row['two_se']:.2f})"
    return f"**{text}**" if bold else text


def _minutes(rec: dict) -> str:
    c = rec["compute"]
    return f"{c['point_seconds'] / max(c['points'], 1) / 60:.0f} min per run"


def lever_table(folder: Path = RESULTS) -> str:
    rows = []
    arch = _load(folder, "preset_recipe-arch.json")
    if arch:
        by = {(p["settings"]["norm"], p["settings"]["arch"]): p for p in arch["points"]
              if p["status"] == "completed"}

        def vs_plain(variant: str, f) -> list[float]:
            return [f(by[(n, variant)]) - f(by[(n, "plain")]) if (n, variant) in by and (n, "plain") in by
                    else None for n in NORMS]

        for variant in ("separable", "separable-b"):
            test = vs_plain(variant, lambda p: p["final_test_acc"])
            train = vs_plain(variant, lambda p: p["epochs"][-1]["train_acc"])
            cost = [by[(n, variant)]["seconds"] / by[(n, "plain")]["seconds"] for n in NORMS
                    if (n, variant) in by and (n, "plain") in by]
            how = "recipe-arch preset: 3 epochs, 10,000 images, one seed"
            rows.append([f"`arch={variant}` vs plain", how, *(f"{100 * d:+.2f}" if d is not None else "—"
                                                               for d in test),
                         "rose: " + " / ".join(f"{100 * d:+.1f}" for d in train if d is not None),
                         f"{statistics.fmean(cost):.1f}x plain's time" if cost else "",
                         "screen in reduced form"])
    full = _load(folder, FULL)
    if full:
        base = _load(folder, full["baseline"]) or {}
        base_train = _final(base.get("points", []), "train_acc")
        rises = [f"{100 * (full['by_norm'][n]['train_mean'] - statistics.fmean(base_train[n])):+.1f}"
                 for n in NORMS if n in full["by_norm"] and n in base_train]
        b = full["by_norm"]
        rows.append([f"`arch=separable-b` vs {full['against']}",
                     f"20 epochs, all images, {min(r['n'] for r in b.values())} seeds, bf16",
                     *(_diff(b.get(n), bold=True) for n in NORMS), "rose as much: " + " / ".join(rises),
                     _minutes(full), "; ".join(b[n]["verdict"] for n in NORMS) + ": **the default**"])
    for path in sorted(folder.glob("recipe_*.json")):
        rec = _load(folder, path.name)
        if path.name == FULL or rec.get("against") != "default":
            continue
        b = rec["by_norm"]
        seeds = min(r["n"] for r in b.values())
        how = "20 epochs, screen (seed 0)" if seeds == 1 else f"20 epochs, {seeds} seeds"
        train = " / ".join(f"{SHORT[n]} {100 * b[n]['train_mean']:.2f}%" for n in NORMS if n in b)
        changes = ", ".join(f"{k}={v}" for k, v in rec["changes"].items() if k != "precision")
        own = " — its own row (a teacher)" if "teacher" in rec["changes"] else ""
        outcome = "; ".join(f"{SHORT[n]} {b[n]['verdict']}" for n in NORMS if n in b)
        rows.append([f"`{changes}` vs default{own}", how, *(_diff(b.get(n)) for n in NORMS), train,
                     _minutes(rec), outcome])
    header = ["lever", "how measured", "BN", "GN", "LN", "train accuracy", "cost (1 thread)", "outcome"]
    return markdown_table(header, rows)


def distill_table(folder: Path = RESULTS, name: str = "recipe_distill-refs.json") -> str | None:
    dist, base = _load(folder, name), _load(folder, FULL)
    if not dist or not base:
        return None

    def curves(rec: dict) -> dict[str, list[dict[int, float]]]:
        out: dict[str, list[dict[int, float]]] = {}
        for p in rec["points"]:
            if p["status"] == "completed":
                curve = {e["epoch"]: e["test_acc"] for e in p["epochs"]}
                out.setdefault(p["settings"]["norm"], []).append(curve)
        return out

    dc, bc = curves(dist), curves(base)
    rows = []
    for n in NORMS:
        row, b = dist["by_norm"].get(n), base["by_norm"][n]
        if row is None:
            continue
        leads = []
        for lo in (1, 6, 11, 16):
            span = range(lo, lo + 5)
            m_base = statistics.fmean(c[e] for c in bc[n] for e in span)
            m_dist = statistics.fmean(c[e] for c in dc[n] for e in span)
            leads.append(f"{100 * (m_dist - m_base):+.1f}")
        mins = [p["seconds"] / 60 for p in dist["points"]
                if p["settings"]["norm"] == n and p["status"] == "completed"]
        rows.append([SHORT[n], f"{100 * row['test_mean']:.2f}%",
                     f"{100 * b['test_mean']:.2f} ± {100 * b['test_std']:.2f}%",
                     f"**{100 * row['difference']:+.2f}** ({100 * row['two_se']:.2f})", row["verdict"],
                     f"{100 * row['train_mean']:.2f} / {100 * b['train_mean']:.2f}%", " / ".join(leads),
                     f"{statistics.fmean(mins):.0f}"])
    return markdown_table(["norm", "distilled, seed 0", "default, 3 seeds",
                "difference (2 SE: the default's seed spread)", "verdict (screen)",
                "train acc: distilled / default", "lead, epochs 1–5 / 6–10 / 11–15 / 16–20",
                "min per run (1 thread, shared)"], rows)


def fill(readme: str, folder: Path = RESULTS) -> str:
    for name, make in (("lever-table", lever_table), ("distill-table", distill_table)):
        readme = fill_blocks(readme, name, lambda _, make=make: make(folder))  # None: left as it is
    return readme


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readme", help="rewrite this file's lever-table and distill-table blocks")
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    folder = Path(args.results)
    if args.readme:
        path = Path(args.readme)
        path.write_text(fill(path.read_text(encoding="utf-8"), folder), encoding="utf-8")
        print(f"-> {path}")
        return 0
    print(lever_table(folder), "", distill_table(folder) or "(no distillation results)", sep="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
