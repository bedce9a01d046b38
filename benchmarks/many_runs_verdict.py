"""The page targets at 10,000 runs over repeated invocations, by the rule in
``benchmarks/results/many_runs_10k/RULE.md`` (fixed before those invocations ran).

    python benchmarks/many_runs_verdict.py benchmarks/results/many_runs.json \\
        benchmarks/results/many_runs_10k/*.json

Each file is one invocation of ``many_runs.py``; its 10,000-run row is used. A target is met if the
median of the lab's tries pooled over all invocations is within it and the median of all but at
most one invocation is too.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

TARGETS = {"runs_json_s": 1.0, "runs_first_s": 2.0, "runs_again_s": 1.0, "compare_first_s": 2.0}
REPORTED = ("compare_cold_s",)  # shown, not judged


def verdict(paths: list[Path], runs: int = 10_000) -> dict:
    rows = []
    for path in paths:
        result = json.loads(path.read_text())
        row = next(r for r in result["rows"] if r["runs"] == runs)
        floor = next(f for f in result["floors"] if f["runs"] == runs)
        rows.append((path.name, row, floor))
    out: dict = {"invocations": [name for name, _, _ in rows], "targets": {}}
    for key in (*TARGETS, *REPORTED):
        if key == "runs_json_s":  # one median of 3 per invocation
            per = [row[key] for _, row, _ in rows]
            pooled = statistics.median(per)
        else:
            per = [statistics.median(row["samples"][key]) for _, row, _ in rows]
            pooled = statistics.median([t for _, row, _ in rows for t in row["samples"][key]])
        floors = [statistics.median(f["samples"][key]) for _, _, f in rows] if key != "runs_json_s" else []
        entry = {"pooled_median": pooled, "per_invocation": per, "floor_per_invocation": floors}
        if key in TARGETS:
            within = sum(m <= TARGETS[key] for m in per)
            entry.update(target=TARGETS[key], invocations_within=within,
                         met=pooled <= TARGETS[key] and within >= len(per) - 1)
        out["targets"][key] = entry
    return out


def main() -> None:
    result = verdict([Path(p) for p in sys.argv[1:]])
    print("invocations:", ", ".join(result["invocations"]))
    for key, e in result["targets"].items():
        per = " ".join(f"{m:.2f}" for m in e["per_invocation"])
        fl = " ".join(f"{m:.2f}" for m in e["floor_per_invocation"])
        n = len(e["per_invocation"])
        judged = (f"target {e['target']:.1f} s: {e['invocations_within']}/{n} within, "
                  f"{'MET' if e['met'] else 'NOT MET'}") if "target" in e else "not judged"
        print(f"{key:16s} pooled {e['pooled_median']:.2f} s; per invocation {per}; floor {fl or '-'}; "
              f"{judged}")


if __name__ == "__main__":
    main()
