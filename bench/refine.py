"""Does refinement pay with the real model? HumanEval, 3 local Qwen2.5-Coder-0.5B instances at temperature 0.8.

Usage: .venv/bin/python bench/refine.py [--budget-min 30] [--limit N] [--start K] [--out PATH] [--threads 0]
       [--instance-timeout-s 300] [--stage-timeout-s 300]

Starts ``swarm up``'s stack (one xllamacpp server with the GGUF from .swarm/models, the four
services as child processes) on free ports, with three instances that differ only by seed, all at
temperature 0.8. Then, for HumanEval problems in order from ``--start``, runs one swarm of size 3
with refinement on and judges, with the problem's hidden test (``test`` + ``check(entry_point)``)
in the project's sandbox (``swarm_bench.quality_scoring.Scorer``):

* the best unrefined selection: the top-ranked candidate of origin SWARM;
* the final answer: the refined one when refinement was kept, else that same selection.

Each problem ends as one of: *helped* (kept; unrefined fails the hidden test, refined passes),
*hurt* (kept; unrefined passes, refined fails), *neutral* (kept; same verdict), *dropped* (an
attempt was made and not kept), *skipped* (no attempt: the refinement reason starts with
"skipped"), or *error* (the run produced no ranked answer). The printed summary counts them and
gives the hidden-test pass rate of the unrefined selections and of the final answers over all
problems done (a problem without an answer counts as a failure for both). One JSON line per
problem goes to ``--out``.

A new problem starts only while the time used so far plus the mean time of a problem fits in
``--budget-min`` (stack start-up included); ``--limit`` caps the count. SIGINT/SIGTERM stop at
once and still print the summary of the problems finished.

Only the HumanEval ``prompt`` is sent as the task; the hidden test is read only here, after the
run, to score. The caller's ``SWARM_*`` settings are not passed to the stack (the product's
defaults are measured), except the sandbox's (``SWARM_SANDBOX*``), with two changes. The learned
instance reputation is off: the three instances are the same model at the same temperature, so
what it would learn over the bench's own runs is noise. The per-instance and per-stage timeouts
are 300 s instead of 120 s, and so is the refiner's own LLM timeout (60 s by default), with a
refinement budget (SWARM_REFINE_BUDGET_S) of two such timeouts instead of 120 s: on a shared
2-core host, three answers and a test writer generating at once can take longer than 120 s, a
refinement longer than 60 s, and a run that times out measures the host, not refinement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarm_bench.humaneval import HUMANEVAL_SIZE, Problem, load_problems, model_stack
from swarm_bench.quality_scoring import Scorer
from swarm_cli.localstack import LocalStack, StackSettings, instances_document
from swarmlib import bearer_interceptors

MODEL = "qwen2.5-coder-0.5b-instruct"
SWARM_SIZE = 3
TEMPERATURE = 0.8
RUN_TIMEOUT_S = 3600.0  # a backstop only: the instance and stage timeouts bound a run
VERDICTS = ("helped", "hurt", "neutral", "dropped", "skipped", "error")
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


@dataclass
class Outcome:
    """One problem: what the swarm selected, what refinement did, and how both scored."""

    task_id: str
    verdict: str = "error"
    run_id: str = ""
    status: str = ""
    wall_s: float = 0.0
    unrefined_id: str = ""
    unrefined_passed: bool = False
    final_id: str = ""
    final_origin: str = ""
    final_passed: bool = False
    swarm_passed: list[bool] = field(default_factory=list)  # every SWARM candidate, in rank order
    swarm_tokens: list[int] = field(default_factory=list)  # their completion tokens, same order
    swarm_latency_s: list[float] = field(default_factory=list)  # their generation times, same order
    refinement_kept: bool = False
    refinement_reason: str = ""
    refinement_rounds: int = 0
    refinement_explanation: str = ""
    dropped_attempt_passed: bool | None = None  # the unranked REFINED candidate of a dropped refinement
    unrefined_code: str = ""
    final_code: str = ""
    events_s: dict[str, float] = field(default_factory=dict)  # seconds from the request to each kind's last event
    failures: list[str] = field(default_factory=list)  # failed instance attempts, "instance#attempt kind: reason"
    error: str = ""

    def line(self) -> dict[str, Any]:
        """The JSON line written for this problem."""
        out = asdict(self)
        out["wall_s"] = round(self.wall_s, 2)
        return out


# -- problems and the stack ---------------------------------------------------------------------


def instances_json(settings: StackSettings) -> str:
    """``swarm up``'s instances (names, server, distinct seeds), every one at ``TEMPERATURE``."""
    return json.dumps([{**spec, "temperature": TEMPERATURE} for spec in instances_document(settings, MODEL)])


def stack_env(settings: StackSettings, instance_timeout_s: float, stage_timeout_s: float) -> dict[str, str]:
    """The caller's environment without its ``SWARM_*`` settings (sandbox ones kept), plus this bench's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_") or k.startswith("SWARM_SANDBOX")}
    # Inline instances take precedence over the file LocalStack writes (swarmlib.load_instances).
    env["SWARM_INSTANCES"] = instances_json(settings)
    env["SWARM_REFINE"] = "true"
    env["SWARM_REPUTATION"] = "false"
    env["SWARM_INSTANCE_TIMEOUT_S"] = str(instance_timeout_s)
    env["SWARM_STAGE_TIMEOUT_S"] = str(stage_timeout_s)
    env["SWARM_REFINER_LLM_TIMEOUT_S"] = str(stage_timeout_s)
    env["SWARM_REFINE_BUDGET_S"] = str(2 * stage_timeout_s)
    return env


# -- one problem ---------------------------------------------------------------------------------


async def run_swarm(
    stub: orchestrator_pb2_grpc.OrchestratorServiceStub, task: str, events_s: dict[str, float]
) -> tuple[pb.Run | None, str]:
    """One RunSwarm of size 3 with refinement on: the ``done`` run (None if none came) and any RPC error.

    ``events_s`` gets, per event kind, the seconds from the request to its last event.
    """
    request = pb.RunSwarmRequest(
        task=task, swarm_size=SWARM_SIZE, instances=[f"qwen-{i + 1}" for i in range(SWARM_SIZE)], skip_refine=False
    )
    run: pb.Run | None = None
    error = ""
    started = time.perf_counter()
    try:
        async for event in stub.RunSwarm(request, timeout=RUN_TIMEOUT_S):
            events_s[event.WhichOneof("event") or "unknown"] = round(time.perf_counter() - started, 2)
            if event.HasField("done"):
                run = event.done
    except grpc.aio.AioRpcError as exc:
        error = f"{exc.code().name}: {exc.details()}"
    return run, error


def classify(outcome: pb.RefinementOutcome, unrefined_passed: bool, final_passed: bool) -> str:
    """helped / hurt / neutral for a kept refinement, else dropped or skipped (or no refinement at all)."""
    if outcome == pb.REFINEMENT_OUTCOME_DROPPED:
        return "dropped"
    if outcome != pb.REFINEMENT_OUTCOME_KEPT:
        return "skipped"
    if final_passed and not unrefined_passed:
        return "helped"
    if unrefined_passed and not final_passed:
        return "hurt"
    return "neutral"


async def judge(scorer: Scorer, problem: Problem, run: pb.Run, outcome: Outcome) -> None:
    """Fill ``outcome`` from the run: the selections, their hidden-test verdicts and the verdict."""
    record = problem.record()
    outcome.run_id = run.id
    outcome.status = pb.RunStatus.Name(run.status)
    refinement = run.refinement
    outcome.refinement_kept = refinement.kept
    outcome.refinement_reason = refinement.reason
    outcome.refinement_rounds = refinement.rounds
    outcome.refinement_explanation = refinement.explanation
    outcome.failures = [
        f"{f.instance}#{f.attempt} {pb.FailureKind.Name(f.kind)}: {f.reason}"[:300] for f in run.failures
    ]
    swarm = sorted(
        (c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM and c.rank > 0), key=lambda c: c.rank
    )
    if not swarm or not run.final.code:
        outcome.error = outcome.error or run.error or "the run has no ranked answer"
        return
    best = swarm[0]
    outcome.unrefined_id = best.id
    outcome.unrefined_code = best.code
    outcome.final_id = run.final.candidate_id
    outcome.final_origin = pb.CandidateOrigin.Name(run.final.origin)
    outcome.final_code = run.final.code
    outcome.swarm_passed = [await scorer.passes(record, c.code) for c in swarm]
    outcome.swarm_tokens = [c.usage.completion_tokens for c in swarm]
    outcome.swarm_latency_s = [round(c.latency_ms / 1000, 1) for c in swarm]
    outcome.unrefined_passed = outcome.swarm_passed[0]
    outcome.final_passed = await scorer.passes(record, run.final.code)
    if refinement.kept and run.final.origin != pb.CANDIDATE_ORIGIN_REFINED:
        outcome.error = "refinement was kept but the final answer is not the refined one"
        return
    outcome.verdict = classify(refinement.outcome, outcome.unrefined_passed, outcome.final_passed)
    if outcome.verdict == "dropped":
        attempt = next((c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_REFINED and c.code.strip()), None)
        if attempt is not None:
            outcome.dropped_attempt_passed = await scorer.passes(record, attempt.code)


async def solve(stub: orchestrator_pb2_grpc.OrchestratorServiceStub, scorer: Scorer, problem: Problem) -> Outcome:
    """Run the swarm on the problem's prompt alone, then score with the hidden test."""
    outcome = Outcome(problem.task_id)
    started = time.perf_counter()
    run, outcome.error = await run_swarm(stub, problem.prompt, outcome.events_s)
    outcome.wall_s = time.perf_counter() - started
    if run is None:
        outcome.error = outcome.error or "the stream ended without a result"
        return outcome
    await judge(scorer, problem, run, outcome)
    return outcome


def progress(index: int, outcome: Outcome) -> str:
    """One line per problem on stderr."""

    def verdict(passed: bool) -> str:
        return "pass" if passed else "fail"

    parts = [f"[{index}] {outcome.task_id}", f"{outcome.wall_s:.1f}s", outcome.verdict]
    if outcome.unrefined_id:
        parts.append(f"unrefined {outcome.unrefined_id}={verdict(outcome.unrefined_passed)}")
        parts.append(f"final {outcome.final_id}={verdict(outcome.final_passed)}")
        parts.append(f"swarm {sum(outcome.swarm_passed)}/{len(outcome.swarm_passed)} pass")
    if outcome.refinement_reason:
        parts.append(f"refinement: {outcome.refinement_reason[:160]}")
    if outcome.error:
        parts.append(f"error: {outcome.error[:300]}")
        parts.extend(f"failure: {failure[:160]}" for failure in outcome.failures[:3])
    return "  ".join(parts)


# -- the benchmark -------------------------------------------------------------------------------


@dataclass
class BenchState:
    """Shared by the problem loop and the summary, so an interrupted run still reports."""

    started: float
    outcomes: list[Outcome] = field(default_factory=list)
    stopped_by: str = ""


async def run_problems(
    stub: orchestrator_pb2_grpc.OrchestratorServiceStub,
    scorer: Scorer,
    problems: Sequence[Problem],
    budget_s: float,
    out: Path,
    state: BenchState,
) -> None:
    """Problems in order while the next one is expected to fit in the budget; one JSON line each."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for index, problem in enumerate(problems, start=1):
            elapsed = time.perf_counter() - state.started
            expected = statistics.mean(o.wall_s for o in state.outcomes) if state.outcomes else 0.0
            if elapsed + expected > budget_s:
                state.stopped_by = f"time budget ({elapsed / 60:.1f} of {budget_s / 60:.0f} min used)"
                return
            outcome = await solve(stub, scorer, problem)
            state.outcomes.append(outcome)
            handle.write(json.dumps(outcome.line()) + "\n")
            handle.flush()
            print(progress(index, outcome), file=sys.stderr, flush=True)
    state.stopped_by = "the end of the problems selected"


def summary_lines(state: BenchState, out: Path) -> list[str]:
    """The printed result."""
    outcomes = state.outcomes
    done = len(outcomes)
    counts = Counter(o.verdict for o in outcomes)
    dropped = [o for o in outcomes if o.verdict == "dropped"]
    would_help = sum(1 for o in dropped if o.dropped_attempt_passed and not o.unrefined_passed)
    would_hurt = sum(1 for o in dropped if o.dropped_attempt_passed is False and o.unrefined_passed)

    def rate(passed: int) -> str:
        return f"{passed / done:.3f} ({passed}/{done})" if done else "n/a"

    span = f"{outcomes[0].task_id} .. {outcomes[-1].task_id}" if outcomes else "none"
    walls = [o.wall_s for o in outcomes]
    timing = f"median {statistics.median(walls):.1f}s, max {max(walls):.1f}s per problem" if walls else "no problem"
    return [
        f"problems done: {done} ({span}); stopped by {state.stopped_by}; "
        f"total {time.perf_counter() - state.started:.0f}s; {timing}",
        f"swarm: {SWARM_SIZE} x {MODEL} at temperature {TEMPERATURE}, refinement on (product defaults otherwise)",
        f"  helped   {counts['helped']:3d}  (kept; unrefined fails the hidden test, refined passes)",
        f"  hurt     {counts['hurt']:3d}  (kept; unrefined passes, refined fails)",
        f"  neutral  {counts['neutral']:3d}  (kept; same hidden-test verdict)",
        f"  dropped  {counts['dropped']:3d}  (kept=False; the dropped attempt would have helped {would_help}, "
        f"hurt {would_hurt})",
        f"  skipped  {counts['skipped']:3d}  (no refinement attempt)",
        f"  error    {counts['error']:3d}  (no ranked answer; counted as failing below)",
        f"hidden-test pass rate: unrefined {rate(sum(o.unrefined_passed for o in outcomes))}, "
        f"final {rate(sum(o.final_passed for o in outcomes))}",
        f"per problem: {out}",
    ]


async def bench(
    stack: LocalStack, settings: StackSettings, args: argparse.Namespace, problems: Sequence[Problem], state: BenchState
) -> None:
    """Start the stack and run the problems through its orchestrator."""
    scorer = await Scorer.create()
    targets = await stack.start(stack_env(settings, args.instance_timeout_s, args.stage_timeout_s))
    print(f"stack up in {time.perf_counter() - state.started:.1f}s", file=sys.stderr, flush=True)
    keyed = bearer_interceptors(stack.cli_key)
    async with grpc.aio.insecure_channel(
        targets["orchestrator"], options=_CHANNEL_OPTIONS, interceptors=keyed
    ) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        await run_problems(stub, scorer, problems, args.budget_min * 60, args.out, state)


async def main() -> int:
    """Parse the options, run the bench (SIGINT/SIGTERM end it early), stop the stack, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-min", type=float, default=30.0, help="time budget in minutes (default 30)")
    parser.add_argument("--limit", type=int, help="at most N problems")
    parser.add_argument("--start", type=int, default=0, help="first problem's index, 0-163 (default 0)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/swarm-bench/refine.jsonl"), help="one JSON line each")
    parser.add_argument("--threads", type=int, default=0, help="model server threads (default: every core)")
    parser.add_argument("--instance-timeout-s", type=float, default=300.0, help="SWARM_INSTANCE_TIMEOUT_S (300)")
    parser.add_argument(
        "--stage-timeout-s",
        type=float,
        default=300.0,
        help="SWARM_STAGE_TIMEOUT_S, SWARM_REFINER_LLM_TIMEOUT_S (300)",
    )
    args = parser.parse_args()
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be >= 1")
    if not 0 <= args.start < HUMANEVAL_SIZE:
        parser.error(f"--start must be in 0..{HUMANEVAL_SIZE - 1}")
    state = BenchState(started=time.perf_counter())
    problems = load_problems(args.start, args.limit)
    loop = asyncio.get_running_loop()
    with model_stack("swarm-refine-", SWARM_SIZE, MODEL, args.threads) as (stack, settings):
        work = asyncio.create_task(bench(stack, settings, args, problems, state))
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, work.cancel)
        try:
            await work
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            state.stopped_by = "a signal"
        except RuntimeError as exc:
            print(f"bench/refine.py: {exc}", file=sys.stderr)
            return 1
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await stack.stop()
    print("\n".join(summary_lines(state, args.out)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
