"""``swarm bench quality``: how well the swarm selects among recorded model outputs.

For every task of a bench data file (``../shared/bench-data/README.md``) and every repeat, K
recorded candidates are drawn (seeded, without replacement), served by K replay instances
(``replay.ReplayServer``) and sent through one real ``RunSwarm`` on the real services, started
in-process on ephemeral ports. The answer the swarm selects is then scored with the task's hidden
``reference_test`` in the assessor's sandbox, next to what a random pick, an oracle and CodeT's
dual agreement (on the generated tests the run reports) would have achieved on the same draws.

The reference test is read only here, for scoring, after the run: it never reaches an instance
or a service (``tests/bench/test_no_leak.py`` checks that).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import grpc

from swarm.v1 import common_pb2, orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarm_bench.data import DataError, Record, load_records
from swarm_bench.replay import ReplayRequest, ReplayServer
from swarmlib import extract_code

if TYPE_CHECKING:
    from swarmlib import Sandbox

SCORE_TIMEOUT_S = 10.0
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


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


@dataclass
class RunOutcome:
    """One task × repeat: what the swarm chose and how it scored."""

    task_id: str
    repeat: int
    code: str
    consensus: bool
    confidence: float
    source: str
    run_id: str = ""
    error: str = ""
    drawn: list[str] = field(default_factory=list)
    stage_s: float | None = None
    wall_s: float = 0.0
    codet_source: str | None = None
    # Scoring (None when the task has no reference test).
    passed: bool | None = None
    codet_passed: bool | None = None
    drawn_passed: list[bool] | None = None

    def line(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "task_id": self.task_id,
            "repeat": self.repeat,
            "code": self.code,
            "consensus": self.consensus,
            "confidence": self.confidence,
            "source": self.source,
            "run_id": self.run_id,
            "drawn": self.drawn,
            "codet_source": self.codet_source,
            "stage_s": self.stage_s,
            "wall_s": round(self.wall_s, 3),
        }
        if self.error:
            out["error"] = self.error
        if self.passed is not None:
            out["passed"] = self.passed
            out["codet_passed"] = self.codet_passed
            out["drawn_passed"] = self.drawn_passed
        return out


# -- drawing and scoring -----------------------------------------------------------------------


def draw(record: Record, per_task: int | None, seed: int, repeat: int) -> list[int]:
    """Indices of the candidates drawn for one run: seeded, without replacement; None = all."""
    pool = len(record.candidates)
    if per_task is None or per_task >= pool:
        return list(range(pool))
    return random.Random(f"{seed}:{record.task_id}:{repeat}").sample(range(pool), per_task)


def scoring_program(program: str, reference_test: str, entry_point: str) -> str:
    """The program followed by the reference test; ``check(entry_point)`` added when it is never called."""
    script = program + "\n" + reference_test
    defines_check = re.search(r"^def check\(", reference_test, re.MULTILINE) is not None
    calls_check = re.search(r"^check\(", reference_test, re.MULTILINE) is not None
    if defines_check and not calls_check and entry_point:
        script += f"\n\ncheck({entry_point})\n"
    return script


class Scorer:
    """Runs program + reference test in the assessor's sandbox; one execution per distinct program."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._cache: dict[tuple[str, str], bool] = {}

    @classmethod
    async def create(cls) -> Scorer:
        from swarmlib import SandboxConfig, open_sandbox

        # The reference test always runs on this host: a benchmark must not spend devbox time.
        sandbox = open_sandbox(replace(SandboxConfig.from_env(os.environ), backend="local"))
        await sandbox.probe()
        return cls(sandbox)

    async def passes(self, record: Record, program: str) -> bool:
        if not program.strip() or record.reference_test is None:
            return False
        key = (record.task_id, program)
        if key not in self._cache:
            script = scoring_program(program, record.reference_test, record.entry_point)
            result = await self._sandbox.run(script, SCORE_TIMEOUT_S)
            self._cache[key] = result.exit_code == 0 and not result.timed_out
        return self._cache[key]


def codet_choice(run: pb.Run) -> pb.Candidate | None:
    """CodeT's dual agreement on the run's generated tests: None when the run reports none.

    Candidates with identical sets of passed generated tests form a cluster; a cluster scores its
    size times the number of tests it passes; the first candidate of the best cluster is chosen.
    """
    swarm = [c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM]
    if not any(t.origin == common_pb2.TEST_ORIGIN_GENERATED for c in swarm for t in c.tests):
        return None
    clusters: dict[frozenset[str], list[pb.Candidate]] = {}
    for candidate in swarm:
        passed = frozenset(t.name for t in candidate.tests if t.origin == common_pb2.TEST_ORIGIN_GENERATED and t.passed)
        clusters.setdefault(passed, []).append(candidate)
    best = max(clusters.items(), key=lambda item: len(item[1]) * len(item[0]))
    return best[1][0]


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
    keep = ("SWARM_ASSESSOR_", "SWARM_SANDBOX", "SWARM_COLLATOR_", "SWARM_EMBEDDING_", "OTEL_")
    return {k: v for k, v in os.environ.items() if k.startswith(keep)}


@asynccontextmanager
async def bench_stack(
    size: int, refine: bool, database: Path, on_request: Callable[[ReplayRequest], None] | None = None
) -> AsyncIterator[BenchStack]:
    """Replay server, collator, assessor, refiner and orchestrator on 127.0.0.1 ephemeral ports;
    the runs are stored in the SQLite file ``database``."""
    from swarm_assessor.config import AssessorConfig
    from swarm_assessor.server import create_server as create_assessor
    from swarm_collator.config import CollatorConfig
    from swarm_collator.server import create_server as create_collator
    from swarm_orchestrator.config import OrchestratorConfig
    from swarm_orchestrator.server import create_server as create_orchestrator
    from swarm_refiner.config import RefinerConfig
    from swarm_refiner.server import create_server as create_refiner

    async with AsyncExitStack() as stack:
        replay = ReplayServer(on_request=on_request)
        await replay.start()
        stack.push_async_callback(replay.stop)
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
        servers = []
        collator, c_port = await create_collator(CollatorConfig.from_env({**env, "SWARM_COLLATOR_ADDR": "127.0.0.1:0"}))
        servers.append(collator)
        assessor, a_port = await create_assessor(AssessorConfig.from_env({**env, "SWARM_ASSESSOR_ADDR": "127.0.0.1:0"}))
        servers.append(assessor)
        refiner, r_port = await create_refiner(RefinerConfig.from_env({**env, "SWARM_REFINER_ADDR": "127.0.0.1:0"}))
        servers.append(refiner)
        orchestrator_env = {
            **env,
            "SWARM_ORCHESTRATOR_ADDR": "127.0.0.1:0",
            "SWARM_COLLATOR_TARGET": f"127.0.0.1:{c_port}",
            "SWARM_ASSESSOR_TARGET": f"127.0.0.1:{a_port}",
            "SWARM_REFINER_TARGET": f"127.0.0.1:{r_port}",
            "SWARM_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
            "SWARM_MAX_SWARM_SIZE": str(max(size, 16)),
            "SWARM_QUORUM_FRACTION": "0.01",
            "SWARM_REFINE": "true" if refine else "false",
            "SWARM_INSTANCE_TIMEOUT_S": "60",
            "SWARM_STAGE_TIMEOUT_S": "600",
            "SWARM_LLM_RETRY_BASE_DELAY_S": "0.01",
            # A replay instance never gets sick; a refused duplicate (HTTP 409) must not bench it.
            "SWARM_UNHEALTHY_AFTER": "1000000",
            "SWARM_HEALTH_INTERVAL_S": "3600",
            # Each draw is independent and replay instances serve arbitrary recorded sources, so a
            # reputation learned over the bench's own runs would be noise; selection is measured alone.
            "SWARM_REPUTATION": "false",
        }
        orchestrator, o_port = await create_orchestrator(OrchestratorConfig.from_env(orchestrator_env))
        servers.append(orchestrator)
        for server in servers:
            await server.start()
            stack.push_async_callback(server.stop, 0.5)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{o_port}", options=_CHANNEL_OPTIONS)
        stack.push_async_callback(channel.close)
        yield BenchStack(replay, orchestrator_pb2_grpc.OrchestratorServiceStub(channel), size)


# -- one run -----------------------------------------------------------------------------------


async def run_once(
    stack: BenchStack, record: Record, picks: Sequence[int], repeat: int, refine: bool, timeout_s: float
) -> tuple[RunOutcome, pb.Run | None]:
    """Register the draw, run the swarm once, and say which recorded candidate it selected."""
    texts = [record.candidates[i].text for i in picks]
    sources = [record.candidates[i].source for i in picks]
    stack.replay.register(record.prompt, texts, record.generated_tests, [model_of(source) for source in sources])
    outcome = RunOutcome(record.task_id, repeat, "", False, 0.0, "", drawn=sources)
    # Instance k serves pick k: a smaller draw than the stack's size uses only its first instances.
    allowed = [f"replay-{k}" for k in range(len(picks))] if len(picks) < stack.size else []
    request = pb.RunSwarmRequest(task=record.prompt, swarm_size=len(picks), skip_refine=not refine, instances=allowed)
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


def model_of(source: str) -> str:
    """The model part of a recorded source ("gpt-4/t0.2#3" -> "gpt-4/t0.2"): what an API would report."""
    return source.split("#", 1)[0] or "replay"


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


@dataclass
class Summary:
    """Everything ``report`` prints, over the same draws."""

    runs: int = 0
    failed_runs: int = 0
    scored_runs: int = 0
    random_pick: float | None = None
    swarm: float | None = None
    codet: float | None = None
    codet_runs: int = 0
    swarm_on_codet_runs: float | None = None
    oracle: float | None = None
    consensus_coverage: float = 0.0
    consensus_precision: float | None = None
    median_stage_s: float | None = None
    median_run_s: float | None = None
    total_s: float = 0.0
    outcomes: list[RunOutcome] = field(default_factory=list)


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
        async with bench_stack(size, options.refine, database, on_request) as stack:
            for record in records:
                for repeat in range(options.repeats):
                    picks = draw(record, options.per_task, options.seed, repeat)
                    outcome, _run = await run_once(stack, record, picks, repeat, options.refine, options.run_timeout_s)
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


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(outcomes: Sequence[RunOutcome]) -> Summary:
    summary = Summary(runs=len(outcomes), outcomes=list(outcomes))
    summary.failed_runs = sum(1 for o in outcomes if not o.code)
    scored = [o for o in outcomes if o.passed is not None and o.drawn_passed is not None]
    summary.scored_runs = len(scored)
    if scored:
        summary.random_pick = _mean([sum(o.drawn_passed or []) / max(1, len(o.drawn_passed or [])) for o in scored])
        summary.swarm = _mean([float(bool(o.passed)) for o in scored])
        summary.oracle = _mean([float(any(o.drawn_passed or [])) for o in scored])
        with_codet = [o for o in scored if o.codet_passed is not None]
        summary.codet_runs = len(with_codet)
        summary.codet = _mean([float(bool(o.codet_passed)) for o in with_codet])
        summary.swarm_on_codet_runs = _mean([float(bool(o.passed)) for o in with_codet])
        claiming = [o for o in scored if o.consensus]
        summary.consensus_precision = _mean([float(bool(o.passed)) for o in claiming])
    summary.consensus_coverage = _mean([float(o.consensus) for o in outcomes]) or 0.0
    stages = [o.stage_s for o in outcomes if o.stage_s is not None]
    summary.median_stage_s = statistics.median(stages) if stages else None
    summary.median_run_s = statistics.median([o.wall_s for o in outcomes]) if outcomes else None
    return summary


def report(summary: Summary, options: BenchOptions, stream: TextIO) -> None:
    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    k = "all" if options.per_task is None else str(options.per_task)
    print(
        f"data {options.data.name}: {summary.runs} runs ({summary.failed_runs} without an answer), "
        f"K={k}, repeats={options.repeats}, seed={options.seed}, refine={'on' if options.refine else 'off'}",
        file=stream,
    )
    if summary.scored_runs:
        print(f"reference-test pass rate over {summary.scored_runs} runs (same draws):", file=stream)
        print(f"  random pick   {pct(summary.random_pick)}   (mean over drawn candidates)", file=stream)
        print(f"  swarm         {pct(summary.swarm)}", file=stream)
        codet_note = f"(over the {summary.codet_runs} runs that reported generated tests"
        if summary.codet_runs:
            codet_note += f"; swarm on those runs {pct(summary.swarm_on_codet_runs)}"
        codet_note += ")"
        print(f"  codet         {pct(summary.codet)}   {codet_note}", file=stream)
        print(f"  oracle        {pct(summary.oracle)}   (any drawn candidate passes)", file=stream)
        print(
            f"consensus precision {pct(summary.consensus_precision)}  (runs claiming consensus that pass)", file=stream
        )
    print(f"consensus coverage  {pct(summary.consensus_coverage)}  (runs claiming consensus)", file=stream)
    print(
        f"timings: median collation+assessment {_secs(summary.median_stage_s)} per run, "
        f"median run {_secs(summary.median_run_s)}, total wall {summary.total_s:.1f}s",
        file=stream,
    )
    print(f"selections: {options.out}", file=stream)


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}s"


# -- command line ------------------------------------------------------------------------------


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
    parser.add_argument("--limit", type=_positive, help="only the first N tasks")
    parser.add_argument("--tasks", default="", help="comma-separated task ids, e.g. HumanEval/0,HumanEval/3")
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
    )


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


def summary_dict(summary: Summary) -> Mapping[str, Any]:
    """The printed figures as a dict (tests and scripts)."""
    return {k: v for k, v in vars(summary).items() if k != "outcomes"}
