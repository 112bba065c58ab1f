#!/usr/bin/env bash
# `make run`: start the local stack, run one task through the CLI, print the result, stop cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
TASK=${1:-"Write a Python function fib(n) that returns the n-th Fibonacci number."}
mkdir -p .swarm
# The CLI demo needs neither the gateway nor the page (`swarm up` alone serves both).
"$BIN/swarm" up --no-web > .swarm/up.log 2>&1 &
UP=$!
cleanup() { kill -TERM "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; }
trap cleanup EXIT
if ! "$BIN/swarm" wait --timeout 240; then
  echo "the local stack did not come up; its log:" >&2
  cat .swarm/up.log >&2
  exit 1
fi
echo "task: $TASK"
start=$(date +%s%N)
"$BIN/swarm" run "$TASK"
elapsed_ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "swarm answered in $((elapsed_ms / 1000)).$(( (elapsed_ms % 1000) / 100 )) s"
