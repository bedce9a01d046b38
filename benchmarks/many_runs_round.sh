#!/usr/bin/env bash
# Four invocations of many_runs.py at 10,000 runs for a judged round (see the round's RULE.md):
# each begins 10 minutes after the previous one began, or as soon as it ends if that is later.
#     bash benchmarks/many_runs_round.sh benchmarks/results/many_runs_10k_s45
set -u
out=${1:?name the round folder}
cd "$(dirname "$0")/.."
for k in 1 2 3 4; do
  start=$(date +%s)
  python benchmarks/many_runs.py 10000 --repeats 8 --out "$out/$(date -u +%Y%m%dT%H%M%SZ).json"
  wait_s=$(( start + 600 - $(date +%s) ))
  [ "$k" -lt 4 ] && [ "$wait_s" -gt 0 ] && sleep "$wait_s"
done
echo "all done"
