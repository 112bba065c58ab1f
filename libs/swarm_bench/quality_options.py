"""What ``swarm bench quality`` is asked to do, and its command-line options.

Kept apart from the benchmark itself so that the ``swarm`` command builds its parser without
importing the services.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class BenchOptions:
    """What ``swarm bench quality`` was asked to do."""

    data: Path
    out: Path
    per_task: int | None = 5  # None: the whole pool
    repeats: int = 1
    seed: int = 0
    refine: bool = False
    limit: int | None = None
    tasks: tuple[str, ...] = ()
    run_timeout_s: float = 900.0
    db: Path | None = None  # None: a temporary SQLite file, deleted at the end
    visible_tests: bool = True  # send a task's visible_tests as the run's attached tests
    reputation: bool = True  # each run learns per model from the assessed runs before it


def _per_task(value: str) -> int | None:
    if value == "all":
        return None
    try:
        k = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError("--per-task takes a number >= 1 or 'all'") from None
    if k < 1:
        raise argparse.ArgumentTypeError("--per-task takes a number >= 1 or 'all'")
    return k


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, type=Path, help="bench data file (JSONL, optionally gzipped)")
    parser.add_argument("--per-task", type=_per_task, default=5, help="candidates drawn per run, or 'all' (default 5)")
    parser.add_argument("--repeats", type=_positive, default=1, help="draws per task (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path, help="selections, one JSON line per task and repeat")
    refine = parser.add_mutually_exclusive_group()
    refine.add_argument("--refine", dest="refine", action="store_true", help="run the refinement stage")
    refine.add_argument("--no-refine", dest="refine", action="store_false", help="skip refinement (the default)")
    parser.set_defaults(refine=False)
    parser.add_argument(
        "--visible-tests",
        choices=["on", "off"],
        default="on",
        help="send each task's visible_tests (if the data has them) as the run's attached tests, as a user "
        "would; off measures the same set without them (default on)",
    )
    parser.add_argument("--limit", type=_positive, help="only the first N tasks")
    parser.add_argument("--tasks", default="", help="comma-separated task ids, e.g. HumanEval/0,HumanEval/3")
    parser.add_argument(
        "--reputation",
        choices=("on", "off"),
        default="on",
        help="on (the default): each run's votes are weighed by what the runs before it (in task order, one "
        "store) learned of each model from visible tests, generated tests and agreement; off: every run alone",
    )
    parser.add_argument(
        "--db",
        type=Path,
        help="keep every run (candidates, scores, tests, clusters) in this SQLite file, to read with "
        "SWARM_DATABASE_URL=sqlite+aiosqlite:///FILE; by default the runs are dropped at the end",
    )


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    return BenchOptions(
        data=args.data,
        out=args.out,
        per_task=args.per_task,
        repeats=args.repeats,
        seed=args.seed,
        refine=args.refine,
        limit=args.limit,
        tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
        db=args.db,
        visible_tests=args.visible_tests == "on",
        reputation=args.reputation == "on",
    )
