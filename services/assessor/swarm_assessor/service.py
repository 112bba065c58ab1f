"""The AssessorService: validate, clean the tests, run every candidate in the sandbox concurrently, score.

A problem with one candidate (no code, a syntax error, a timeout) is reported on that
candidate's assessment; only a malformed request or a broken sandbox fails the whole call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc

from swarm.v1 import assessor_pb2, assessor_pb2_grpc, common_pb2
from swarmlib import (
    ExecResult,
    InvalidArgumentError,
    Sandbox,
    SandboxLimit,
    SandboxUnavailableError,
    assessment_score,
    check_candidate_ids,
    compile_error,
    entry_points,
)

from . import scoring
from .admission import Admission
from .config import AssessorConfig
from .gates import Evidence, evaluate
from .generated_tests import attached_tests, clean_generated, name_generated, runnable
from .harness import Plan, Report, TestOutcome, build_execution, build_spec, parse_report
from .limits import to_proto
from .probes import collect_probes, mutate_probes
from .runner import DEADLINE, Observations
from .tests_from_task import TaskTest, call_the_entry_point, tests_from_task
from .typed_inputs import code_blocks, informative, untested_inputs

log = logging.getLogger(__name__)

_MIN_TEST_BUDGET_S = 0.2
_DEADLINE_MARGIN_S = 0.5


@dataclass
class _Verdict:
    """Mutable working copy of one candidate's assessment before it becomes a message.

    ``outcomes`` is aligned with the request's tests (visible, then generated); None means the
    test was not run, for the reason in ``not_run``; ``limit`` stopped the execution as a whole.
    """

    outcomes: list[TestOutcome | None] = field(default_factory=list)
    not_run: str = ""
    error: str = ""
    limit: SandboxLimit = SandboxLimit.NONE
    duration_ms: float = 0.0
    ran_cleanly: bool = False
    behaviour: str = ""
    observations: tuple[str | None, ...] = ()
    cpu_ms: float = 0.0
    peak_rss_kb: int = 0


@dataclass(frozen=True)
class _Selection:
    """The request's tests after cleaning: what runs and, after running, what is reported."""

    visible: list[TaskTest]
    generated: list[TaskTest]


def _validate(request: assessor_pb2.AssessRequest, config: AssessorConfig) -> float:
    """Reject malformed requests with a message that says what to fix; returns the timeout."""
    count = len(request.candidates)
    if count == 0:
        raise InvalidArgumentError("candidates is empty; send at least one candidate to assess")
    if count > config.max_candidates:
        raise InvalidArgumentError(
            f"{count} candidates sent; at most {config.max_candidates} per request are allowed, split the request"
        )
    check_candidate_ids(candidate.id for candidate in request.candidates)
    timeout = request.timeout_seconds or config.timeout_s
    if not 0 < timeout <= config.max_timeout_s:
        raise InvalidArgumentError(
            f"timeout_seconds={request.timeout_seconds:g} is out of range; use 0 (server default "
            f"{config.timeout_s:g}s) or a value in (0, {config.max_timeout_s:g}]"
        )
    return timeout


def _result(test: TaskTest, outcome: TestOutcome | None, verdict: _Verdict) -> common_pb2.TestResult:
    """A test not run inherits why it was not run: the execution's limit, or its own (the soft deadline)."""
    origin = common_pb2.TEST_ORIGIN_GENERATED if test.generated else common_pb2.TEST_ORIGIN_VISIBLE
    if outcome is None:
        output, passed, limit = f"not run: {verdict.not_run}", False, verdict.limit
    elif outcome.error == DEADLINE:
        output, passed, limit = "not run: the candidate's time budget ran out", False, outcome.limit
    else:
        output, passed, limit = outcome.output, outcome.passed, outcome.limit
    return common_pb2.TestResult(name=test.name, passed=passed, output=output, origin=origin, limit=to_proto(limit))


def _execution_limit(result: ExecResult, report: Report) -> SandboxLimit:
    """The limit that stopped the execution: the backend's, else the load error's, else the time budget's."""
    if result.limit is not SandboxLimit.NONE:
        return result.limit
    if report.loaded is False:
        return report.load_limit
    if report.finished and report.skipped:
        return SandboxLimit.WALL_TIME
    return SandboxLimit.NONE


def _kept_generated(verdicts: list[_Verdict], visible: int, generated: int) -> list[int]:
    """Indices (within the generated tests) of those some candidate could run."""
    kept = []
    for g in range(generated):
        errors = []
        for verdict in verdicts:
            outcome = verdict.outcomes[visible + g] if verdict.outcomes else None
            if outcome is not None and outcome.error != DEADLINE:
                errors.append(outcome.error)
        if runnable(errors):
            kept.append(g)
    return kept


def _with_mutants(probes: list[str], limit: int) -> list[str]:
    """The tests' own probe inputs, then up to ``limit`` neighbours of them (``mutate_probes``)."""
    return probes + mutate_probes(probes, limit)


def _informative_behaviour(verdicts: list[_Verdict], untested_from: int) -> None:
    """Each signature digested again over the probes that count (``typed_inputs.informative``):
    inputs without a test behind them on which most programs raise are dropped."""
    rows = [v.observations for v in verdicts if v.observations]
    keep = informative(rows, untested_from)
    for verdict in verdicts:
        if verdict.observations and len(verdict.observations) == len(keep):
            counted = Observations(0)  # the runner's own digest, over the probes that count
            counted.values = [o for o, k in zip(verdict.observations, keep, strict=True) if k]
            verdict.behaviour = counted.digest()


async def _all_or_nothing(jobs: Iterable[Coroutine[Any, Any, _Verdict]]) -> list[_Verdict]:
    """Run the jobs together; the first failure cancels the rest and is raised as itself.

    A refused execution (queue deadline) or a broken sandbox fails the request, so the other
    candidates' executions must not go on for a caller that is getting an error.
    """
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(job) for job in jobs]
    except ExceptionGroup as failed:
        first: BaseException = failed
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None
    return [task.result() for task in tasks]


class AssessorServicer(assessor_pb2_grpc.AssessorServiceServicer):
    """Serves Assess; owns the sandbox whose semaphore bounds executions across all calls."""

    def __init__(self, config: AssessorConfig, sandbox: Sandbox) -> None:
        self._config = config
        self._sandbox = sandbox
        self._admission = Admission(config.max_concurrency, config.max_queued)

    async def Assess(
        self, request: assessor_pb2.AssessRequest, context: grpc.aio.ServicerContext
    ) -> assessor_pb2.AssessResponse:
        timeout = _validate(request, self._config)
        reason = self._sandbox.unavailable_reason
        if reason is not None:
            raise SandboxUnavailableError(reason)
        wanted = entry_points(request.task)
        task_tests = call_the_entry_point(tests_from_task(request.task), request.task, wanted)
        visible = task_tests + attached_tests(request.attached_tests, task_tests)
        generated = clean_generated(request.generated_tests, wanted, visible, self._config.max_generated_tests)
        tests = visible + generated
        # The programs, and the raw replies' code blocks (a model's usage example may sit in a block of its own).
        codes = [c.code for c in request.candidates] + [b for c in request.candidates for b in code_blocks(c.text)]
        plan = self._plan(tests, wanted, len(visible), timeout, request.task, codes)
        shared = build_spec(plan)
        log.info(
            "run %s: assessing %d candidates, %d visible tests, %d of %d generated tests after cleaning, %d probes",
            request.run_id,
            len(request.candidates),
            len(visible),
            len(generated),
            len(request.generated_tests),
            len(plan.probes),
        )
        # A request's own executions go to the shared slots at most max_concurrency at a time, so
        # the queue deadline measures waiting behind other requests, never behind its siblings:
        # a 100-candidate request on 2 slots is not refused for its own length.
        pace = asyncio.Semaphore(self._config.max_concurrency)
        with self._admission.admit(len(request.candidates)):
            jobs = (self._verdict(c, tests, shared, timeout, pace, context) for c in request.candidates)
            verdicts = await _all_or_nothing(jobs)
        if plan.has_untested and plan.untested_from is not None:
            _informative_behaviour(verdicts, plan.untested_from)
        kept = _kept_generated(list(verdicts), len(visible), len(generated))
        selection = _Selection(visible, name_generated([generated[g] for g in kept]))
        for verdict in verdicts:
            if verdict.outcomes:
                verdict.outcomes = verdict.outcomes[: len(visible)] + [verdict.outcomes[len(visible) + g] for g in kept]
        assessments = [
            self._assessment(c.id, c.code, request.task, selection, v)
            for c, v in zip(request.candidates, verdicts, strict=True)
        ]
        return assessor_pb2.AssessResponse(
            assessments=assessments,
            tests_found=len(visible),
            sandbox=self._sandbox.backend,
            generated_tests_kept=len(kept),
            probes=len(plan.probes),
        )

    async def EvaluateGates(
        self, request: assessor_pb2.EvaluateGatesRequest, context: grpc.aio.ServicerContext
    ) -> assessor_pb2.EvaluateGatesResponse:
        """Judge a run's final answer against the configured gates (see ``gates``); no code runs here."""
        if not request.HasField("final") or not request.final.candidate_id:
            raise InvalidArgumentError("final is missing: send the run's final answer with its scores and tests")
        evidence = Evidence(final=request.final, others=list(request.others), consensus=request.consensus)
        decision = evaluate(self._config.gates, evidence)
        log.info("run %s: gates %s", request.run_id, decision.summary)
        return assessor_pb2.EvaluateGatesResponse(decision=decision)

    def _queue_deadline(self, context: grpc.aio.ServicerContext) -> float:
        """When a waiting execution gives up: the queue limit, or sooner if the caller's deadline is."""
        wait_s = self._config.queue_timeout_s
        remaining = context.time_remaining()
        if remaining is not None:
            wait_s = min(wait_s, remaining)
        return asyncio.get_running_loop().time() + wait_s

    def _plan(
        self, tests: list[TaskTest], wanted: list[str], visible: int, timeout: float, task: str, codes: list[str]
    ) -> Plan:
        cfg = self._config
        small = min(cfg.probe_timeout_s, cfg.test_timeout_s)
        probes = _with_mutants(collect_probes((t.source for t in tests), wanted), cfg.mutated_probes)
        untested_from = len(probes)
        if not probes:
            # No test calls the entry point: inputs without expected outputs (docs/selection.md,
            # "Evidence without tests") still let programs agree or part.
            probes = untested_inputs(task, codes, wanted, cfg.untested_probes)
        return Plan(
            tests=tests,
            probes=probes,
            untested_from=untested_from,
            entry_points=wanted,
            alias=wanted[0] if len(wanted) == 1 else "",
            budget_s=min(cfg.test_timeout_s, max(_MIN_TEST_BUDGET_S, timeout / (visible + 1))),
            generated_budget_s=small,
            probe_budget_s=small,
            # Stop starting tests a little before the wall clock kills the run, so slow
            # candidates still report what they did and their behaviour.
            deadline_s=timeout - min(_DEADLINE_MARGIN_S, timeout * 0.2),
        )

    async def _verdict(
        self,
        candidate: common_pb2.CandidateCode,
        tests: list[TaskTest],
        shared: str,
        timeout: float,
        pace: asyncio.Semaphore,
        context: grpc.aio.ServicerContext,
    ) -> _Verdict:
        code = candidate.code
        if not code.strip():
            return _Verdict(not_run="no code", error="no code in reply")
        size = len(code.encode("utf-8"))
        if size > self._config.max_code_bytes:
            return _Verdict(
                not_run="code too large", error=f"code is {size} bytes; the limit is {self._config.max_code_bytes}"
            )
        detail = compile_error(code, "candidate.py")
        if detail is not None:
            return _Verdict(not_run="syntax error", error=f"syntax error: {detail}")
        async with pace, self._admission.slot(self._queue_deadline(context)):
            return await self._execute(code, tests, shared, timeout)

    async def _execute(self, code: str, tests: list[TaskTest], shared: str, timeout: float) -> _Verdict:
        execution = build_execution(code, shared)
        result = await self._sandbox.run(execution.program, timeout, execution.files)
        report = parse_report(result.stdout, execution.marker)
        verdict = _Verdict(duration_ms=result.duration_ms, limit=_execution_limit(result, report))
        verdict.cpu_ms, verdict.peak_rss_kb = report.cpu_ms, report.peak_rss_kb
        if report.loaded is False:
            verdict.error = f"error while loading: {report.load_error}"
            verdict.not_run = verdict.error
            return verdict
        if result.reason:
            verdict.error = result.reason
        elif not report.finished:
            tail = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.exit_code}"]
            verdict.error = f"program stopped before reporting: {tail[0][:300]}"
        elif report.skipped:
            verdict.error = f"time budget of {timeout:g}s ran out with {report.skipped} tests not run"
        verdict.not_run = verdict.error or "no result reported"
        verdict.outcomes = [report.outcomes.get(index) for index in range(len(tests))]
        verdict.ran_cleanly = bool(report.loaded) and report.finished and not verdict.error
        if report.loaded and report.finished:
            verdict.behaviour = report.behaviour
            verdict.observations = report.observations
        return verdict

    def _assessment(
        self, candidate_id: str, code: str, task: str, selection: _Selection, verdict: _Verdict
    ) -> assessor_pb2.Assessment:
        tests = selection.visible + selection.generated
        outcomes = verdict.outcomes or [None] * len(tests)
        results = [_result(t, o, verdict) for t, o in zip(tests, outcomes, strict=True)]
        visible = results[: len(selection.visible)]
        generated = results[len(selection.visible) :]
        if not code.strip():
            scores = common_pb2.Scores(tests_total=len(visible), generated_total=len(generated))
        else:
            passed = sum(t.passed for t in visible)
            ran = verdict.ran_cleanly and not scoring.is_stub(code, task)
            correct = scoring.correctness(passed, len(visible), ran)
            complete = scoring.completeness(code, task)
            styled = scoring.style(code)
            scores = common_pb2.Scores(
                completeness=complete,
                correctness=correct,
                style=styled,
                overall=assessment_score(correct, complete, styled),
                tests_passed=passed,
                tests_total=len(visible),
                generated_passed=sum(t.passed for t in generated),
                generated_total=len(generated),
            )
        return assessor_pb2.Assessment(
            candidate_id=candidate_id,
            scores=scores,
            tests=results,
            error=verdict.error,
            duration_ms=verdict.duration_ms,
            behaviour=verdict.behaviour,
            limit=to_proto(verdict.limit),
            cpu_ms=verdict.cpu_ms,
            peak_rss_kb=verdict.peak_rss_kb,
        )
