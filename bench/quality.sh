#!/usr/bin/env bash
# Selection quality on the recorded sets (docs/quality.md): each command prints one table row.
# Usage: bench/quality.sh [fast|all]   (fast: the two K<=6 rows, ~4 min; all: every row, ~45 min)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${SWARM_BENCH_DATA:-../shared/bench-data}
OUT=${SWARM_BENCH_OUT:-/tmp/swarm-bench}
mkdir -p "$OUT"
Q=(.venv/bin/swarm bench quality --repeats 1 --seed 0)
"${Q[@]}" --data "$D/humaneval-codegen16b-100.jsonl.gz" --per-task 5 --out "$OUT/codegen-k5.jsonl"
"${Q[@]}" --data "$D/humaneval-3models-10runs.jsonl.gz" --per-task 6 --out "$OUT/3models-k6.jsonl"
if [ "${1:-fast}" = all ]; then
  "${Q[@]}" --data "$D/humaneval-3models-10runs.jsonl.gz" --per-task 30 --out "$OUT/3models-k30.jsonl"
  "${Q[@]}" --data "$D/humaneval-codegen16b-100.jsonl.gz" --per-task all --out "$OUT/codegen-k100.jsonl"
fi
