"""Fixed against adaptive swarm sizes on the recorded pools: pass rate against LLM calls per task.

For every task one draw of ``--draw`` recorded candidates (7; seeded, without replacement, as
``swarm bench quality`` draws) is served by as many replay instances, instance k serving pick k.
Each sizing runs on its own in-process stack (``quality.bench_stack``), every task through one
real ``RunSwarm``:

- ``fixed K``: the first K picks (the run may use replay-0..K-1 only);
- ``auto``: ``swarm_size`` 0 (the 3-7 complexity rule of Story 4, ``sizing.auto_swarm_size``: the
  bench stack runs with ``SWARM_DEFAULT_SIZING=complexity``), every instance allowed;
- ``adaptive``: ``adaptive`` with ``swarm_size`` = the draw: it starts with the first picks and
  each round is served the next ones (a run of the size of the draw starts at slot 0 on a fresh
  stack and holds all of its slots, so slot k is replay-k).

The replay server counts what each run asked: answer calls (purpose ``solve``) and test-writer
calls (``tests``) apart. The answer is scored with the hidden reference test after the run, as in
``swarm bench quality``; the reference test never reaches the swarm. Latency is the wall time of
the whole ``RunSwarm`` (an adaptive run's rounds included).

Usage: python -m swarm_bench.adaptive --data FILE [--limit N] [--sizings fixed3,fixed5,...] [--out F]
       python -m swarm_bench.adaptive --summary-of F [F ...]   # summary of rows files, on their common tasks
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

from swarm.v1 import orchestrator_pb2 as pb

from .data import Record, load_records, model_of
from .quality import BenchStack, bench_stack
from .quality_scoring import Scorer, draw
from .replay import ReplayRequest

SIZINGS = ("fixed3", "fixed5", "fixed7", "auto", "adaptive")


@dataclass
class Row:
    """One task under one sizing."""

    sizing: str
    task_id: str
    passed: bool
    answer_calls: int
    test_calls: int
    rounds: int
    consensus: bool
    wall_s: float
    error: str = ""
    grown: list[str] = field(default_factory=list)  # why each later round was asked (``Grown.reason``)


def request_for(sizing: str, record: Record, draw_size: int, tests: Sequence[str] = ()) -> pb.RunSwarmRequest:
    """The RunSwarm request of one sizing (see the module docstring), with ``tests`` attached."""
    base = pb.RunSwarmRequest(task=record.prompt, skip_refine=True, tests=list(tests))
    if sizing.startswith("fixed"):
        size = int(sizing.removeprefix("fixed"))
        base.swarm_size = size
        base.instances.extend(f"replay-{k}" for k in range(size))
    elif sizing == "adaptive":
        base.swarm_size = draw_size
        base.adaptive = True
    elif sizing != "auto":
        raise ValueError(f"unknown sizing {sizing!r}; use {', '.join(SIZINGS)}")
    return base


async def run_task(
    stack: BenchStack,
    record: Record,
    picks: Sequence[int],
    sizing: str,
    scorer: Scorer,
    calls: Counter[str],
    tests: Sequence[str],
) -> Row:
    texts = [record.candidates[i].text for i in picks]
    models = [model_of(record.candidates[i].source) for i in picks]
    stack.replay.register(record.prompt, texts, record.generated_tests, models)
    before = Counter(calls)
    run: pb.Run | None = None
    rounds, error, grown = 1, "", []
    started = time.perf_counter()
    try:
        async for event in stack.stub.RunSwarm(request_for(sizing, record, len(picks), tests), timeout=900):
            if event.HasField("grown"):
                rounds = event.grown.round
                grown.append(event.grown.reason)
            if event.HasField("done"):
                run = event.done
    except grpc.aio.AioRpcError as exc:
        error = f"{exc.code().name}: {exc.details()}"
    finally:
        stack.replay.unregister(record.prompt)
    wall = time.perf_counter() - started
    spent = calls - before
    passed = run is not None and await scorer.passes(record, run.final.code)
    return Row(
        sizing=sizing,
        task_id=record.task_id,
        passed=passed,
        answer_calls=spent["solve"],
        test_calls=spent["tests"],
        rounds=rounds,
        consensus=run is not None and run.consensus.reached,
        wall_s=round(wall, 3),
        error=error or (run.error if run is not None and run.status != pb.RUN_STATUS_SUCCEEDED else ""),
        grown=grown,
    )


async def run_sizing(
    records: Sequence[Record], sizing: str, draw_size: int, seed: int, out: Path, tests: dict[str, list[str]]
) -> list[Row]:
    scorer = await Scorer.create()
    rows: list[Row] = []
    calls: Counter[str] = Counter()

    def count(request: ReplayRequest) -> None:
        calls[request.purpose] += 1

    with tempfile.TemporaryDirectory(prefix="swarm-adaptive-") as tmp, out.open("a", encoding="utf-8") as sink:
        async with bench_stack(draw_size, False, Path(tmp) / "bench.db", count) as stack:
            for record in records:
                picks = draw(record, draw_size, seed, 0)
                row = await run_task(stack, record, picks, sizing, scorer, calls, tests.get(record.task_id, []))
                rows.append(row)
                sink.write(json.dumps(asdict(row)) + "\n")
                sink.flush()
    return rows


def summary_line(sizing: str, rows: Sequence[Row]) -> str:
    n = len(rows)
    passed = sum(r.passed for r in rows)
    answers = statistics.fmean(r.answer_calls for r in rows)
    tests = statistics.fmean(r.test_calls for r in rows)
    wall = statistics.median(r.wall_s for r in rows)
    rounds = statistics.fmean(r.rounds for r in rows)
    errors = sum(1 for r in rows if r.error)
    return (
        f"{sizing:<9} n={n:<4} pass {passed / n:.3f} ({passed}/{n})  answer calls/task {answers:.2f}  "
        f"test-writer calls/task {tests:.2f}  rounds {rounds:.2f}  consensus {sum(r.consensus for r in rows)}  "
        f"median latency {wall:.2f}s  errors {errors}"
    )


def summarise(*paths: Path) -> list[str]:
    """The summary lines of rows files (``--out`` of earlier runs, finished or not), by sizing, over
    the tasks every sizing has a row for (so that an unfinished sizing is compared on the same tasks)."""
    by_sizing: dict[str, list[Row]] = {}
    for path in paths:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = Row(**json.loads(line))
                by_sizing.setdefault(row.sizing, []).append(row)
    common = set.intersection(*({r.task_id for r in rows} for rows in by_sizing.values())) if by_sizing else set()
    return [summary_line(sizing, [r for r in rows if r.task_id in common]) for sizing, rows in by_sizing.items()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swarm_bench.adaptive", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--summary-of", type=Path, nargs="+", help="only print the summary of these rows files, on their common tasks"
    )
    parser.add_argument("--data", type=Path)
    parser.add_argument("--limit", type=int, help="only the first N tasks")
    parser.add_argument("--draw", type=int, default=7, help="candidates drawn per task (default 7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sizings", default=",".join(SIZINGS), help=f"comma-separated, of {', '.join(SIZINGS)}")
    parser.add_argument("--no-visible-tests", action="store_true", help="do not attach the data's visible_tests")
    parser.add_argument("--out", type=Path, default=Path("adaptive-rows.jsonl"), help="one JSON line per run")
    args = parser.parse_args(argv)
    if args.summary_of is not None:
        print("\n".join(summarise(*args.summary_of)))
        return 0
    if args.data is None:
        parser.error("--data is required")
    records = load_records(args.data)[: args.limit]
    tests = {} if args.no_visible_tests else {r.task_id: list(r.visible_tests) for r in records}
    sizings = [s.strip() for s in args.sizings.split(",") if s.strip()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("", encoding="utf-8")
    lines = []
    for sizing in sizings:
        rows = asyncio.run(run_sizing(records, sizing, args.draw, args.seed, args.out, tests))
        lines.append(summary_line(sizing, rows))
        print(lines[-1], file=sys.stderr, flush=True)
    attached = (
        ""
        if args.no_visible_tests
        else f", visible tests attached for {sum(1 for r in records if tests.get(r.task_id))}"
    )
    print(f"{args.data.name}: {len(records)} task(s), draws of {args.draw}, seed {args.seed}{attached}")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
