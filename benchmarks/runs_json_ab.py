"""``runs --json`` of two versions of the code on one store, in interleaved pairs.

    python benchmarks/runs_json_ab.py BEFORE_REV STORE [--pairs 10] [--out FILE]

``BEFORE_REV`` (a git revision of this repository) is checked out in a temporary worktree; the
code after is this checkout. Each pair runs ``python -m cifar_app runs --json --runs-dir STORE``
once with each version (run from the version's folder, which ``-m`` puts first on the module
path; the order alternates, before first in even pairs), wall clock of the whole process. The
store's index should already be built (run the command once first): each try then reads the
index, not the logs. Reports each version's
median and range, and after over before from the pairs (``many_runs.against_floor``: the
geometric mean of the pairs' ratios with its 95% t interval, their median and range); then,
for the code after, where one listing's time goes, in one process (median of 3: importing the
CLI, reading the index and stamps, writing the JSON). Writes
``benchmarks/results/runs_json_ab.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from many_runs import against_floor
from results_file import write_result

ROOT = Path(__file__).resolve().parent.parent

BREAKDOWN = r"""
import json, sys, time
t0 = time.perf_counter()
import cifar_app.cli
from cifar_app.store.runstore import RunStore
t1 = time.perf_counter()
rows = RunStore(sys.argv[1]).summaries()
t2 = time.perf_counter()
json.dumps([r.as_dict() for r in rows])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "summaries_s": t2 - t1, "dump_s": t3 - t2, "runs": len(rows)}))
"""


def one(tree: Path, store: Path) -> float:
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cifar_app", "runs", "--json", "--runs-dir", str(store)],
                         capture_output=True, cwd=tree)
    dt = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"error: runs --json failed in {tree}: {out.stderr.decode()[-2000:]}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", help="git revision of the code before")
    ap.add_argument("store", type=Path, help="a runs folder, its index built")
    ap.add_argument("--pairs", type=int, default=10)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "runs_json_ab.json"))
    args = ap.parse_args()
    rev = subprocess.run(["git", "rev-parse", args.before], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    after_rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                               check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(old), rev], cwd=ROOT, check=True)
        try:
            one(ROOT, args.store)  # the index as the code after keeps it, once, not timed
            times: dict[str, list[float]] = {"before": [], "after": []}
            for i in range(args.pairs):
                for who in ("before", "after") if i % 2 == 0 else ("after", "before"):
                    times[who].append(one(old if who == "before" else ROOT, args.store))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT)
    parts = [json.loads(subprocess.run([sys.executable, "-c", BREAKDOWN, str(args.store)], cwd=ROOT,
                                       capture_output=True, text=True, check=True).stdout) for _ in range(3)]
    breakdown = {k: statistics.median(p[k] for p in parts) for k in ("import_s", "summaries_s", "dump_s")}
    ratio = against_floor(times["after"], times["before"])
    for who in ("before", "after"):
        t = times[who]
        print(f"{who:6s} median {statistics.median(t):.3f} s, {min(t):.3f}-{max(t):.3f} s")
    low_high = f" ({ratio['low']:.2f}-{ratio['high']:.2f})" if "low" in ratio else ""
    print(f"after / before: x{ratio['ratio']:.2f}{low_high} over {ratio['pairs']} pairs; "
          f"median x{ratio['median']:.2f}, {ratio['min']:.2f}-{ratio['max']:.2f}")
    print("after, in one process: " + ", ".join(f"{k} {v:.3f}" for k, v in breakdown.items()))
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--", "cifar_app"], cwd=ROOT,
                                capture_output=True, text=True).stdout.strip())
    write_result(args.out, {"before": rev, "after": after_rev, "after_has_uncommitted_changes": dirty,
                            "store": str(args.store),
                            "runs": parts[0]["runs"], "times": times, "after_over_before": ratio,
                            "after_breakdown": breakdown})


if __name__ == "__main__":
    main()
