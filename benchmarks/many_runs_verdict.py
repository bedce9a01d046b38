"""The page targets at 10,000 runs over repeated invocations, by a rule fixed before they ran
(``benchmarks/results/many_runs_10k/RULE.md``, stop 42; ``many_runs_10k_s43/RULE.md``, stop 43).

    python benchmarks/many_runs_verdict.py --need 3 --of 4 benchmarks/results/many_runs.json \\
        benchmarks/results/many_runs_10k/*.json
    python benchmarks/many_runs_verdict.py --need 3 --of 4 benchmarks/results/many_runs_10k_s43/*.json

Each file is one invocation of ``many_runs.py``; its 10,000-run row is used. A target is met if the
median of the lab's tries pooled over the invocations is within it and the medians of at least
``--need`` invocations are too; with fewer than ``--of`` invocations, nothing is judged.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

TARGETS = {"runs_json_s": 1.0, "runs_first_s": 2.0, "runs_again_s": 1.0, "compare_first_s": 2.0}
REPORTED = ("compare_cold_s",)  # shown, not judged


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _invocation(path: Path, runs: int) -> tuple[dict, dict]:
    """The ``runs``-run row and floor of one results file; ``ValueError`` saying what is wrong
    with it (not JSON, no such row, a missing or non-finite figure)."""
    try:
        result = json.loads(path.read_text())
        row = next(r for r in result["rows"] if r["runs"] == runs)
        floor = next(f for f in result["floors"] if f["runs"] == runs)
        if not _finite(row["runs_json_s"]):
            raise ValueError(f"runs_json_s is {row['runs_json_s']!r}")
        for key in (*TARGETS, *REPORTED):
            if key != "runs_json_s":
                for who, samples in (("lab", row["samples"][key]), ("floor", floor["samples"][key])):
                    if not samples or not all(_finite(t) for t in samples):
                        raise ValueError(f"{who} {key}: {samples!r:.80}")
                lab, base = len(row["samples"][key]), len(floor["samples"][key])
                if lab != base:  # the tries are made in pairs: the ratios pair them by position
                    raise ValueError(f"{key}: {lab} lab tries, {base} floor tries")
    except (OSError, ValueError, KeyError, TypeError, StopIteration) as e:
        raise ValueError(f"{type(e).__name__}: {e}") from None
    return row, floor


def verdict(paths: list[Path], runs: int = 10_000, need: int = 3, of: int = 4) -> dict:
    """A file that cannot be read whole is left out with its reason (``rejected``): it counts as
    an invocation that did not run."""
    rows, rejected = [], {}
    for path in paths:
        try:
            rows.append((path.name, *_invocation(path, runs)))
        except ValueError as e:
            rejected[path.name] = str(e)
    out: dict = {"invocations": [name for name, _, _ in rows], "targets": {}, "judged": len(rows) == of,
                 "rejected": rejected}
    for key in (*TARGETS, *REPORTED):
        if key == "runs_json_s":  # one median of 3 per invocation
            per = [row[key] for _, row, _ in rows]
            pooled = statistics.median(per)
        else:
            per = [statistics.median(row["samples"][key]) for _, row, _ in rows]
            pooled = statistics.median([t for _, row, _ in rows for t in row["samples"][key]])
        floors = [statistics.median(f["samples"][key]) for _, _, f in rows] if key != "runs_json_s" else []
        entry = {"pooled_median": pooled, "per_invocation": per, "floor_per_invocation": floors}
        if key != "runs_json_s":  # every try, in file order: the lab's and the floor's pair up
            entry.update(samples=[t for _, row, _ in rows for t in row["samples"][key]],
                         floor_samples=[t for _, _, f in rows for t in f["samples"][key]])
        if key in TARGETS:
            within = sum(m <= TARGETS[key] for m in per)
            entry.update(target=TARGETS[key], invocations_within=within,
                         met=len(per) == of and pooled <= TARGETS[key] and within >= need)
        out["targets"][key] = entry
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--need", type=int, required=True, help="invocations whose median must be within")
    ap.add_argument("--of", type=int, required=True, help="invocations the rule asks for")
    args = ap.parse_args()
    result = verdict(args.files, need=args.need, of=args.of)
    for name, why in result["rejected"].items():
        print(f"{name}: left out, {why}")
    print("invocations:", ", ".join(result["invocations"]))
    if not result["judged"]:
        print(f"not judged ({len(result['invocations'])} of {args.of} ran): no target is met")
    for key, e in result["targets"].items():
        per = " ".join(f"{m:.2f}" for m in e["per_invocation"])
        fl = " ".join(f"{m:.2f}" for m in e["floor_per_invocation"])
        n = len(e["per_invocation"])
        judged = (f"target {e['target']:.1f} s: {e['invocations_within']}/{n} within, "
                  f"{'MET' if e['met'] else 'NOT MET'}") if "target" in e else "not judged"
        judged = judged if result["judged"] else "not judged"
        print(f"{key:16s} pooled {e['pooled_median']:.2f} s; per invocation {per}; floor {fl or '-'}; "
              f"{judged}")


if __name__ == "__main__":
    main()
