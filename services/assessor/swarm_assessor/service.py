"""The AssessorService: validate, run every candidate in the sandbox concurrently, score.

A problem with one candidate (no code, a syntax error, a timeout) is reported on that
candidate's assessment; only a malformed request or a broken sandbox fails the whole call.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import grpc

from swarm.v1 import assessor_pb2, assessor_pb2_grpc, common_pb2
from swarmlib import (
    InvalidArgumentError,
    SandboxUnavailableError,
    assessment_score,
    check_candidate_ids,
    compile_error,
    entry_points,
)

from . import scoring
from .config import AssessorConfig
from .harness import build_program, parse_report
from .sandbox import BACKEND, Sandbox
from .tests_from_task import TaskTest, tests_from_task

log = logging.getLogger(__name__)

_MIN_TEST_BUDGET_S = 0.2


@dataclass
class _Verdict:
    """Mutable working copy of one candidate's assessment before it becomes a message."""

    tests: list[common_pb2.TestResult] = field(default_factory=list)
    error: str = ""
    duration_ms: float = 0.0
    ran_cleanly: bool = False


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


def _not_run(tests: list[TaskTest], why: str) -> list[common_pb2.TestResult]:
    return [common_pb2.TestResult(name=t.name, passed=False, output=f"not run: {why}") for t in tests]


class AssessorServicer(assessor_pb2_grpc.AssessorServiceServicer):
    """Serves Assess; owns the sandbox whose semaphore bounds executions across all calls."""

    def __init__(self, config: AssessorConfig, sandbox: Sandbox) -> None:
        self._config = config
        self._sandbox = sandbox

    async def Assess(
        self, request: assessor_pb2.AssessRequest, context: grpc.aio.ServicerContext
    ) -> assessor_pb2.AssessResponse:
        timeout = _validate(request, self._config)
        reason = self._sandbox.unavailable_reason
        if reason is not None:
            raise SandboxUnavailableError(reason)
        tests = tests_from_task(request.task)
        wanted = entry_points(request.task)
        alias = wanted[0] if len(wanted) == 1 else ""
        log.info("run %s: assessing %d candidates, %d tests", request.run_id, len(request.candidates), len(tests))
        assessments = await asyncio.gather(
            *(self._assess_one(c, request.task, tests, alias, timeout) for c in request.candidates)
        )
        return assessor_pb2.AssessResponse(assessments=assessments, tests_found=len(tests), sandbox=BACKEND)

    async def _assess_one(
        self, candidate: common_pb2.CandidateCode, task: str, tests: list[TaskTest], alias: str, timeout: float
    ) -> assessor_pb2.Assessment:
        code = candidate.code
        if not code.strip():
            return self._assessment(
                candidate.id, code, task, tests, _Verdict(_not_run(tests, "no code"), "no code in reply")
            )
        size = len(code.encode("utf-8"))
        if size > self._config.max_code_bytes:
            verdict = _Verdict(
                _not_run(tests, "code too large"), f"code is {size} bytes; the limit is {self._config.max_code_bytes}"
            )
            return self._assessment(candidate.id, code, task, tests, verdict)
        detail = compile_error(code, "candidate.py")
        if detail is not None:
            verdict = _Verdict(_not_run(tests, "syntax error"), f"syntax error: {detail}")
            return self._assessment(candidate.id, code, task, tests, verdict)
        verdict = await self._execute(code, tests, alias, timeout)
        return self._assessment(candidate.id, code, task, tests, verdict)

    async def _execute(self, code: str, tests: list[TaskTest], alias: str, timeout: float) -> _Verdict:
        budget = min(self._config.test_timeout_s, max(_MIN_TEST_BUDGET_S, timeout / (len(tests) + 1)))
        program, marker = build_program(code, tests, alias, budget)
        result = await self._sandbox.run(program, timeout)
        report = parse_report(result.stdout, marker)
        verdict = _Verdict(duration_ms=result.duration_ms)
        if report.loaded is False:
            verdict.error = f"error while loading: {report.load_error}"
            verdict.tests = _not_run(tests, verdict.error)
            return verdict
        if result.reason:
            verdict.error = result.reason
        elif not report.finished:
            tail = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.exit_code}"]
            verdict.error = f"program stopped before reporting: {tail[0][:300]}"
        for index, test in enumerate(tests):
            outcome = report.outcomes.get(index)
            if outcome is None:
                why = verdict.error or "no result reported"
                verdict.tests.append(common_pb2.TestResult(name=test.name, passed=False, output=f"not run: {why}"))
            else:
                verdict.tests.append(
                    common_pb2.TestResult(name=test.name, passed=outcome.passed, output=outcome.output)
                )
        verdict.ran_cleanly = bool(report.loaded) and report.finished and not verdict.error
        return verdict

    def _assessment(
        self, candidate_id: str, code: str, task: str, tests: list[TaskTest], verdict: _Verdict
    ) -> assessor_pb2.Assessment:
        if not code.strip():
            scores = common_pb2.Scores(tests_total=len(tests))
        else:
            passed = sum(t.passed for t in verdict.tests)
            correct = scoring.correctness(passed, len(tests), verdict.ran_cleanly)
            complete = scoring.completeness(code, task)
            styled = scoring.style(code)
            scores = common_pb2.Scores(
                completeness=complete,
                correctness=correct,
                style=styled,
                overall=assessment_score(correct, complete, styled),
                tests_passed=passed,
                tests_total=len(tests),
            )
        return assessor_pb2.Assessment(
            candidate_id=candidate_id,
            scores=scores,
            tests=verdict.tests,
            error=verdict.error,
            duration_ms=verdict.duration_ms,
        )
