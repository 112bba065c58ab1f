"""``swarm bench quality``: how well the swarm selects among recorded model outputs.

For every task of a bench data file (``swarm_bench.data``) and every repeat, K recorded
candidates are drawn (seeded, without replacement), served by K replay instances
(``replay.ReplayServer``) and sent through one real ``RunSwarm`` on the real services, started
in-process on ephemeral ports (``swarm_bench.stack``). The answer the swarm selects is then scored
with the task's hidden ``reference_test`` in the assessor's sandbox, next to what a random pick,
an oracle and CodeT's dual agreement (on the generated tests the run reports) would have achieved
on the same draws (``quality_scoring``).

The reference test is read only here, for scoring, after the run: it never reaches an instance
or a service (``tests/bench/test_no_leak.py`` checks that).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import grpc

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarmlib import extract_code

from .data import DataError, Record, load_records, model_of
from .quality_options import BenchOptions, options_from_args
from .quality_scoring import Scorer, codet_choice, draw
from .quality_summary import RunOutcome, Summary, report, summarise
from .replay import ReplayRequest, ReplayServer
from .stack import orchestrator, stage_servers


def stage_seconds(events: Sequence[pb.RunSwarmResponse]) -> float | None:
    """Collation + assessment: from the last ``instance_finished`` to the last of ``collated``/``assessed``."""
    finished = [e.time.ToNanoseconds() for e in events if e.WhichOneof("event") == "instance_finished"]
    stages = [e.time.ToNanoseconds() for e in events if e.WhichOneof("event") in ("collated", "assessed")]
    if not finished or not stages:
        return None
    return max(0.0, (max(stages) - max(finished)) / 1e9)


def instance_index(name: str) -> int | None:
    match = re.fullmatch(r"replay-(\d+)", name)
    return int(match.group(1)) if match else None


# -- the stack ---------------------------------------------------------------------------------


@dataclass
class BenchStack:
    """The replay server and the four services, in-process; ``stub`` talks to the orchestrator."""

    replay: ReplayServer
    stub: orchestrator_pb2_grpc.OrchestratorServiceStub
    size: int


def _passthrough_env() -> dict[str, str]:
    """Settings from the caller's environment that still apply (sandbox, model path, telemetry)."""
    keep = ("SWARM_ASSESSOR_", "SWARM_SANDBOX", "SWARM_COLLATOR_", "SWARM_EMBEDDING_", "SWARM_ADAPTIVE_", "OTEL_")
    return {k: v for k, v in os.environ.items() if k.startswith(keep)}


@asynccontextmanager
async def bench_stack(
    size: int,
    refine: bool,
    database: Path,
    on_request: Callable[[ReplayRequest], None] | None = None,
    reputation: bool = False,
) -> AsyncIterator[BenchStack]:
    """The replay server and the in-process stack (``swarm_bench.stack``) on its instances; the
    runs are stored in the SQLite file ``database``, and with ``reputation`` they teach the runs
    after them (per model only: see below)."""
    async with ReplayServer(on_request=on_request) as replay:
        instances = json.dumps(
            [
                {
                    "name": f"replay-{k}",
                    "base_url": replay.base_url(k),
                    "model": "replay",
                    "temperature": 0.0,
                    "seed": 0,
                }
                for k in range(size)
            ]
        )
        env = {
            **_passthrough_env(),
            "SWARM_INSTANCES": instances,
            "SWARM_COLLATOR_MAX_CANDIDATES": str(max(64, size + 1)),
            "SWARM_ASSESSOR_MAX_CANDIDATES": str(max(32, size + 1)),
            "SWARM_ASSESSOR_MAX_QUEUED": str(max(64, size + 1)),
        }
        overrides = {
            "SWARM_MAX_SWARM_SIZE": str(max(size, 16)),
            "SWARM_QUORUM_FRACTION": "0.01",
            "SWARM_REFINE": "true" if refine else "false",
            "SWARM_INSTANCE_TIMEOUT_S": "60",
            "SWARM_STAGE_TIMEOUT_S": "600",
            "SWARM_LLM_RETRY_BASE_DELAY_S": "0.01",
            # A replay instance never gets sick; a refused duplicate (HTTP 409) must not bench it.
            "SWARM_UNHEALTHY_AFTER": "1000000",
            "SWARM_HEALTH_INTERVAL_S": "3600",
            # The runs go one after another in task order, so each learns from the assessed runs
            # before it (never from a hidden test: the reference test reaches no service). Per model
            # only: replay instance k serves a different recorded source on every task, so what it
            # would learn as an instance is noise.
            "SWARM_REPUTATION": "true" if reputation else "false",
            "SWARM_REPUTATION_SCOPE": "model",
            # A run of size 0 is the complexity rule here (the "auto" sizing of swarm_bench.adaptive);
            # every other bench run names its size, and adaptive runs ask for it.
            "SWARM_DEFAULT_SIZING": "complexity",
        }
        database_url = f"sqlite+aiosqlite:///{database}"
        async with (
            stage_servers(env) as stages,
            orchestrator(stages, instances, database_url, env, **overrides) as orch,
        ):
            yield BenchStack(replay, orch.stub, size)


# -- one run -----------------------------------------------------------------------------------


async def run_once(
    stack: BenchStack,
    record: Record,
    picks: Sequence[int],
    repeat: int,
    refine: bool,
    timeout_s: float,
    visible_tests: bool = True,
) -> tuple[RunOutcome, pb.Run | None]:
    """Register the draw, run the swarm once, and say which recorded candidate it selected.

    The record's visible tests go with the run as attached tests (``RunSwarmRequest.tests``),
    as a user's own would, unless ``visible_tests`` is off; the reference test never does."""
    texts = [record.candidates[i].text for i in picks]
    sources = [record.candidates[i].source for i in picks]
    stack.replay.register(record.prompt, texts, record.generated_tests, [model_of(source) for source in sources])
    outcome = RunOutcome(record.task_id, repeat, "", False, 0.0, "", drawn=sources)
    # Instance k serves pick k: a smaller draw than the stack's size uses only its first instances.
    allowed = [f"replay-{k}" for k in range(len(picks))] if len(picks) < stack.size else []
    request = pb.RunSwarmRequest(
        task=record.prompt,
        swarm_size=len(picks),
        skip_refine=not refine,
        instances=allowed,
        tests=list(record.visible_tests) if visible_tests else [],
    )
    events: list[pb.RunSwarmResponse] = []
    run: pb.Run | None = None
    started = time.perf_counter()
    try:
        async for event in stack.stub.RunSwarm(request, timeout=timeout_s):
            events.append(event)
            outcome.run_id = event.run_id or outcome.run_id
            if event.HasField("done"):
                run = event.done
    except grpc.aio.AioRpcError as exc:
        outcome.error = f"{exc.code().name}: {exc.details()}"
    finally:
        stack.replay.unregister(record.prompt)
    outcome.wall_s = time.perf_counter() - started
    outcome.stage_s = stage_seconds(events)
    if run is None:
        outcome.error = outcome.error or "the stream ended without a result"
        return outcome, None
    if run.error and not outcome.error and run.status != pb.RUN_STATUS_SUCCEEDED:
        outcome.error = run.error
    outcome.code = run.final.code
    outcome.consensus = run.consensus.reached
    outcome.confidence = round(run.consensus.confidence, 4)
    outcome.source = _source_of(run, run.final.candidate_id, sources)
    chosen = codet_choice(run)
    if chosen is not None:
        outcome.codet_source = _source_of(run, chosen.id, sources)
    return outcome, run


def _source_of(run: pb.Run, candidate_id: str, sources: Sequence[str]) -> str:
    for candidate in run.candidates:
        if candidate.id != candidate_id:
            continue
        if candidate.origin == pb.CANDIDATE_ORIGIN_REFINED:
            return "refined"
        index = instance_index(candidate.instance)
        return sources[index % len(sources)] if index is not None else f"instance {candidate.instance}"
    if run.final.origin == pb.CANDIDATE_ORIGIN_REFINED:
        return "refined"
    return ""


# -- the benchmark -----------------------------------------------------------------------------


def select_records(records: Sequence[Record], options: BenchOptions) -> list[Record]:
    chosen = list(records)
    if options.tasks:
        by_id = {r.task_id: r for r in records}
        missing = [t for t in options.tasks if t not in by_id]
        if missing:
            raise DataError(f"unknown task ids in {options.data}: {', '.join(missing)}")
        chosen = [by_id[t] for t in options.tasks]
    if options.limit is not None:
        chosen = chosen[: options.limit]
    return chosen


async def run_bench(
    options: BenchOptions,
    *,
    on_request: Callable[[ReplayRequest], None] | None = None,
    log: TextIO | None = sys.stderr,
) -> Summary:
    """Run the benchmark and write ``options.out``; ``on_request`` sees every replay request."""
    started = time.perf_counter()
    if options.db is not None and options.db.is_dir():
        raise DataError(f"--db {options.db} is a directory: give the path of a SQLite file to keep the runs in")
    if options.db is not None and options.reputation and options.db.exists():
        raise DataError(f"--db {options.db} exists: its runs would seed the reputation; remove it or --reputation off")
    records = select_records(load_records(options.data), options)
    if not records:
        raise DataError(f"no tasks selected from {options.data}")
    size = max(len(r.candidates) for r in records) if options.per_task is None else options.per_task
    scored = any(r.reference_test is not None for r in records)
    scorer = await Scorer.create() if scored else None
    outcomes: list[RunOutcome] = []
    options.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="swarm-bench-") as tmp, options.out.open("w", encoding="utf-8") as out:
        database = options.db or Path(tmp) / "bench.db"
        database.parent.mkdir(parents=True, exist_ok=True)
        async with bench_stack(size, options.refine, database, on_request, options.reputation) as stack:
            for record in records:
                for repeat in range(options.repeats):
                    picks = draw(record, options.per_task, options.seed, repeat)
                    outcome, _run = await run_once(
                        stack, record, picks, repeat, options.refine, options.run_timeout_s, options.visible_tests
                    )
                    if scorer is not None and record.reference_test is not None:
                        await _score(scorer, record, picks, outcome, _run)
                    outcomes.append(outcome)
                    out.write(json.dumps(outcome.line()) + "\n")
                    out.flush()
                    if log is not None:
                        print(_progress(outcome), file=log, flush=True)
    summary = summarise(outcomes)
    summary.total_s = time.perf_counter() - started
    return summary


async def _score(scorer: Scorer, record: Record, picks: Sequence[int], outcome: RunOutcome, run: pb.Run | None) -> None:
    programs = [extract_code(record.candidates[i].text, record.prompt) for i in picks]
    outcome.drawn_passed = list(await asyncio.gather(*(scorer.passes(record, p) for p in programs)))
    outcome.passed = await scorer.passes(record, outcome.code)
    chosen = codet_choice(run) if run is not None else None
    outcome.codet_passed = await scorer.passes(record, chosen.code) if chosen is not None else None


def _progress(outcome: RunOutcome) -> str:
    parts = [f"{outcome.task_id} #{outcome.repeat}", f"{outcome.wall_s:.1f}s"]
    if outcome.stage_s is not None:
        parts.append(f"stages {outcome.stage_s:.1f}s")
    parts.append(f"consensus={'yes' if outcome.consensus else 'no'}")
    if outcome.passed is not None and outcome.drawn_passed is not None:
        parts.append(f"swarm={'pass' if outcome.passed else 'fail'}")
        parts.append(f"drawn {sum(outcome.drawn_passed)}/{len(outcome.drawn_passed)} pass")
    if outcome.error:
        parts.append(f"error: {outcome.error}")
    return "  ".join(parts)


def run_cli(args: argparse.Namespace) -> int:
    """``swarm bench quality``: 0 on success, 2 on a bad data file or options, 1 if the sandbox is missing."""
    from swarmlib import SandboxUnavailableError

    options = options_from_args(args)
    try:
        summary = asyncio.run(run_bench(options))
    except DataError as exc:
        print(f"swarm bench quality: {exc}", file=sys.stderr)
        return 2
    except SandboxUnavailableError as exc:
        print(f"swarm bench quality: cannot score: {exc}", file=sys.stderr)
        return 1
    report(summary, options, sys.stdout)
    return 0
