#!/usr/bin/env bash
# Selection quality on the recorded sets (docs/quality.md): each command prints one table row.
# Usage: bench/quality.sh [fast|all]   (fast: the two K<=6 rows and the two MBPP rows; all: every row)
set -euo pipefail
cd "$(dirname "$0")/.."
D=${SWARM_BENCH_DATA:-../shared/bench-data}
OUT=${SWARM_BENCH_OUT:-/tmp/swarm-bench}
mkdir -p "$OUT"
Q=(.venv/bin/swarm bench quality --repeats 1 --seed 0)
# Each row keeps its runs in $OUT/<row>.db (candidates, scores, tests), for bench/compare_selections.py --runs.
row() { local name=$1; shift; rm -f "$OUT/$name.db"; "${Q[@]}" "$@" --out "$OUT/$name.jsonl" --db "$OUT/$name.db"; }
row codegen-k5 --data "$D/humaneval-codegen16b-100.jsonl.gz" --per-task 5
row 3models-k6 --data "$D/humaneval-3models-10runs.jsonl.gz" --per-task 6
# MBPP with the example the models were shown sent as the user's attached test, then without it.
row mbpp-visible --data "$D/mbpp-mapcoder-qwen-10.jsonl.gz" --per-task all
row mbpp-novisible --data "$D/mbpp-mapcoder-qwen-10.jsonl.gz" --per-task all --visible-tests off
if [ "${1:-fast}" = all ]; then
  row 3models-k30 --data "$D/humaneval-3models-10runs.jsonl.gz" --per-task 30
  row codegen-k100 --data "$D/humaneval-codegen16b-100.jsonl.gz" --per-task all
fi
