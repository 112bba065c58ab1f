"""The figures of a ``swarm bench quality`` selections file, finished or not.

Usage: .venv/bin/python bench/quality_partial.py SELECTIONS.jsonl [--visible-tests on|off] [--per-task N]

A row of ``bench/quality.sh`` writes one line per task as it goes; this prints the bench's own
report (``swarm_bench.quality_summary``) over the lines written so far, so a row stopped early
still gives its figures, with the number of tasks they cover. The flags only label the header.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from swarm_bench.quality_options import BenchOptions
from swarm_bench.quality_summary import RunOutcome, report, summarise

FIELDS = (
    *("task_id", "repeat", "code", "consensus", "confidence", "source", "run_id", "error", "drawn", "stage_s"),
    *("wall_s", "codet_source", "passed", "codet_passed", "drawn_passed"),
)


def outcomes(path: Path) -> list[RunOutcome]:
    """Every complete line of the file (a torn last line is skipped)."""
    read = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(raw)
        except json.JSONDecodeError:
            continue
        read.append(RunOutcome(**{k: row[k] for k in FIELDS if k in row}))
    return read


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("selections", type=Path)
    parser.add_argument("--visible-tests", choices=("on", "off"), default="on")
    parser.add_argument("--per-task", type=int, default=None, help="K of the row (default: all)")
    args = parser.parse_args()
    options = BenchOptions(
        data=args.selections, out=args.selections, per_task=args.per_task, visible_tests=args.visible_tests == "on"
    )
    report(summarise(outcomes(args.selections)), options, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
