"""Refinement rounds: ask for a better answer while the best one is unsettled, keep it only if not worse.

``keep_or_drop`` is the rule that decides each attempt; ``Refinement.refine`` runs the rounds
within SWARM_REFINE_ROUNDS and SWARM_REFINE_BUDGET_S. When rounds run, why an answer counts as
settled and why the keep rule compares what it compares: docs/selection.md ("Refinement").
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from swarm.v1 import common_pb2, orchestrator_pb2 as pb, refiner_pb2
from swarmlib import StageError, assessment_score

from . import gating
from .config import OrchestratorConfig
from .consensus import consensus_for
from .pool import InstancePool
from .ranking import Ranking, selection
from .stages import StageCalls, assess, assess_request, code_of, rpc_failure

Emit = Callable[[pb.RunSwarmResponse], Awaitable[None]]
KEPT, DROPPED, SKIPPED = pb.REFINEMENT_OUTCOME_KEPT, pb.REFINEMENT_OUTCOME_DROPPED, pb.REFINEMENT_OUTCOME_SKIPPED
_LABELS = {KEPT: "kept", DROPPED: "dropped", SKIPPED: "skipped"}


@dataclass(frozen=True)
class Keep:
    """The keep-or-drop decision on one assessed attempt, and why, in words."""

    kept: bool
    why: str


def keep_or_drop(attempt: common_pb2.Scores, best: pb.Candidate) -> Keep:
    """Keep ``attempt`` only if it is not worse than ``best`` (the best answer so far) on what a
    program shows on its own: its assessment score and its visible tests passed, both at least
    ``best``'s. Agreement is not compared: a rewrite has no swarm behind it."""
    s = best.scores
    best_assessed = assessment_score(s.correctness, s.completeness, s.style)
    tests = f"tests {attempt.tests_passed}/{attempt.tests_total}"
    if attempt.overall >= best_assessed and attempt.tests_passed >= s.tests_passed:
        return Keep(True, f"assessed {attempt.overall:.3f} >= best {best.id} {best_assessed:.3f}, {tests}")
    return Keep(
        False,
        f"assessed {attempt.overall:.3f} vs best {best.id} {best_assessed:.3f}, {tests} vs "
        f"{s.tests_passed}/{s.tests_total}",
    )


def same_program(a: pb.Candidate, b: pb.Candidate) -> bool:
    """Equal code (else text) once whitespace is ignored: a rewrite that changes only layout changes nothing."""
    return "".join((a.code or a.text).split()) == "".join((b.code or b.text).split())


def refine_top(best: pb.Candidate, ranked: Sequence[pb.Candidate], size: int = 3) -> list[pb.Candidate]:
    """``best``, then the best-ranked answers that behave differently, then other distinct code:
    two answers that behave alike show the refiner nothing new."""
    chosen = [best]
    rest = [c for c in ranked if c.id != best.id]

    def differs(c: pb.Candidate) -> bool:
        return all(c.id != o.id and not same_program(c, o) for o in chosen)

    def behaves_differently(c: pb.Candidate) -> bool:
        return bool(c.behaviour) and all(c.behaviour != o.behaviour for o in chosen) and differs(c)

    for keep in (behaves_differently, differs):
        for candidate in rest:
            if len(chosen) < size and keep(candidate):
                chosen.append(candidate)
    return chosen


def fails_a_visible_test(candidate: pb.Candidate) -> bool:
    return candidate.scores.tests_passed < candidate.scores.tests_total


def outcome(
    kind: pb.RefinementOutcome,
    why: str,
    *,
    reply: refiner_pb2.RefineResponse | None = None,
    rounds: int = 0,
    overall: float = 0.0,
    candidate_id: str = "",
) -> pb.Refined:
    """A refinement outcome with its reason in words, "<kept|dropped|skipped>: <why>"; with the
    refiner's ``reply``, what it said it changed and its template (and the call counts as a round)."""
    return pb.Refined(
        outcome=kind,
        kept=kind == KEPT,
        reason=f"{_LABELS[kind]}: {why}",
        overall=overall,
        rounds=1 if reply is not None else rounds,
        candidate_id=candidate_id,
        explanation=reply.explanation if reply is not None else "",
        template_version=reply.template_version if reply is not None else "",
    )


class AttemptLog(Protocol):
    """Where refinement reports what it spends and each assessed attempt, as it happens."""

    def spent(self, usage: common_pb2.Usage) -> None: ...

    async def assessed(self, attempt: pb.Candidate) -> None: ...


@dataclass(frozen=True)
class RunContext:
    """What refinement needs of the run: its task, the collator's findings, the caller's options."""

    run_id: str
    task: str
    analysis: str
    consensus: common_pb2.Consensus
    clusters: Sequence[common_pb2.Cluster]
    allowed: Sequence[str]
    attached_tests: Sequence[str] = ()


@dataclass(frozen=True)
class RefinementResult:
    """The stage's summary, the kept attempt (the new final answer) or else the last assessed one
    (stored unranked, for the record)."""

    summary: pb.Refined
    kept: pb.Candidate | None = None
    dropped: pb.Candidate | None = None


@dataclass(frozen=True)
class _Round:
    """One round: its outcome, the reason without its label, the attempt, whether another may follow."""

    outcome: pb.Refined
    why: str
    attempt: pb.Candidate | None = None
    go_on: bool = True


@dataclass
class _Rounds:
    """The rounds so far (the loop's state)."""

    best: pb.Candidate
    kept: pb.Candidate | None = None
    last: pb.Candidate | None = None
    previous: refiner_pb2.RejectedAttempt | None = None
    outcomes: list[pb.Refined] = field(default_factory=list)
    longest: float = 0.0
    stopped: str = ""

    def record(self, result: _Round) -> None:
        """Carry a round's attempt forward: a kept one leads the next round, a rejected one is shown to it."""
        self.outcomes.append(result.outcome)
        self.previous = None
        attempt = result.attempt
        if attempt is None:
            return
        if result.outcome.outcome == KEPT:
            self.kept = self.best = attempt
            return
        if result.outcome.candidate_id:  # assessed, so it had a program worth keeping on record
            self.last = attempt
        self.previous = refiner_pb2.RejectedAttempt(
            attempt=refiner_pb2.RefineInput(candidate=code_of(attempt), scores=attempt.scores, tests=attempt.tests),
            reason=result.why,
            explanation=result.outcome.explanation,
        )

    def summary(self) -> pb.Refined:
        """The outcome of the attempt returned (the last kept, else the last with a program), with
        every round's outcome after its reason when there were several."""
        about = self.kept or self.last
        decisive = next((o for o in reversed(self.outcomes) if about and o.candidate_id == about.id), self.outcomes[-1])
        summary = pb.Refined()
        summary.CopyFrom(decisive)
        summary.rounds = sum(o.rounds for o in self.outcomes)
        if len(self.outcomes) > 1 or self.stopped:
            rounds = "; ".join(f"round {i}: {o.reason}" for i, o in enumerate(self.outcomes, start=1))
            summary.reason = f"{decisive.reason} [{rounds}{'; ' + self.stopped if self.stopped else ''}]"
        return summary


class Refinement:
    """Runs the refinement rounds of one run against the refiner and the assessor."""

    def __init__(self, config: OrchestratorConfig, pool: InstancePool, calls: StageCalls) -> None:
        self._config = config
        self._pool = pool
        self._calls = calls

    async def refine(self, run: RunContext, ranking: Ranking, emit: Emit, log: AttemptLog) -> RefinementResult:
        """Rounds while the best answer so far is unsettled and the budget allows; each round's
        outcome is streamed as it happens and the summary returned."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        settled = await self._settled(run, ranking.best, ranking.candidates)
        if settled:
            summary = outcome(SKIPPED, settled, overall=0.0)
            await self._stream(emit, summary.kept, summary.overall, summary.reason, SKIPPED)
            return RefinementResult(summary)
        state = _Rounds(best=ranking.best)
        rounds = self._config.refine_rounds
        for number in range(1, rounds + 1):
            left = self._config.refine_budget_s - (loop.time() - started)
            if number > 1:
                if not await self._worth_another_round(run, state.best, ranking.candidates):
                    break
                if left < state.longest:
                    spent = f"{max(left, 0.0):.1f} s of SWARM_REFINE_BUDGET_S left"
                    state.stopped = f"stopped: {spent}, a round took {state.longest:.1f} s"
                    break
            round_started = loop.time()
            result = await self._round(run, ranking, state, number, log, timeout_s=max(left, 0.1))
            state.longest = max(state.longest, loop.time() - round_started)
            reason = f"round {number}: {result.outcome.reason}" if rounds > 1 else result.outcome.reason
            await self._stream(emit, result.outcome.kept, result.outcome.overall, reason, result.outcome.outcome)
            state.record(result)
            if not result.go_on:
                break
        return RefinementResult(state.summary(), kept=state.kept, dropped=None if state.kept else state.last)

    @staticmethod
    async def _stream(emit: Emit, kept: bool, overall: float, reason: str, kind: pb.RefinementOutcome) -> None:
        await emit(pb.RunSwarmResponse(refined=pb.Refined(kept=kept, overall=overall, reason=reason, outcome=kind)))

    async def _settled(self, run: RunContext, best: pb.Candidate, ranked: Sequence[pb.Candidate]) -> str:
        """Why the swarm's best answer needs no refinement, or "" when it may gain from one."""
        if fails_a_visible_test(best) or not consensus_for(run.consensus, run.clusters, best, best).reached:
            return ""
        if not await self._gates_pass(run, best, ranked):
            return ""
        tests = f"every visible test passes ({best.scores.tests_passed}/{best.scores.tests_total})"
        if not best.scores.tests_total:
            tests = "no visible test fails (the task states none)"
        return f"{tests}, the swarm's tested consensus is on the answer and the quality gates pass it"

    async def _worth_another_round(self, run: RunContext, best: pb.Candidate, ranked: Sequence[pb.Candidate]) -> bool:
        """Whether the best so far still fails something a rewrite can move: a visible test, or the gates."""
        return fails_a_visible_test(best) or not await self._gates_pass(run, best, ranked)

    async def _gates_pass(self, run: RunContext, best: pb.Candidate, ranked: Sequence[pb.Candidate]) -> bool:
        """Whether the gates would pass ``best`` (a swarm answer or a kept attempt) as the run's answer,
        with the consensus as it would then stand."""
        others = [c for c in ranked if c.id != best.id]
        consensus = consensus_for(run.consensus, run.clusters, best, ranked[0])
        decision = await gating.decide(self._calls, run.run_id, best, others, consensus, self._config.stage_timeout_s)
        return decision.outcome == common_pb2.GATE_OUTCOME_PASS

    def _instance(self, best: pb.Candidate, allowed: Sequence[str]) -> str | None:
        """The refine instance (SWARM_REFINE_INSTANCE) while it is healthy; else the best candidate's
        instance, else another healthy one the run may use."""
        chosen = self._config.refine_instance
        if chosen and self._pool.is_healthy(chosen):
            return chosen
        if best.instance in allowed and self._pool.is_healthy(best.instance):
            return best.instance
        healthy = [n for n in allowed if self._pool.is_healthy(n)]
        return healthy[0] if healthy else None

    async def _round(
        self, run: RunContext, ranking: Ranking, state: _Rounds, number: int, log: AttemptLog, *, timeout_s: float
    ) -> _Round:
        """One refiner call and the attempt's assessment against ``state.best``; no further round
        after an outage of the refiner or the assessor, which another call would only repeat."""
        swarm_best, best = ranking.best, state.best
        instance = self._instance(swarm_best, run.allowed)
        if instance is None:
            return _Round(outcome(SKIPPED, "no healthy instance"), "no healthy instance", go_on=False)
        request = refiner_pb2.RefineRequest(
            run_id=run.run_id,
            task=run.task,
            analysis=run.analysis,
            instance=self._pool.instance_ref(instance),
            max_tokens=self._config.max_tokens,
            top=[
                refiner_pb2.RefineInput(candidate=code_of(c), scores=c.scores, tests=c.tests)
                for c in refine_top(best, ranking.candidates)
            ],
            round=number,
            previous=state.previous,
        )
        try:
            reply = await self._calls.refine(request, min(self._config.stage_timeout_s, timeout_s))
        except grpc.aio.AioRpcError as exc:
            why = f"refiner failed ({rpc_failure(exc)})"
            return _Round(outcome(SKIPPED, why, rounds=1), why, go_on=False)
        log.spent(reply.usage)
        attempt = pb.Candidate(
            id=f"r{number}",
            origin=pb.CANDIDATE_ORIGIN_REFINED,
            instance=instance,
            model=self._pool.spec(instance).model,
            text=reply.text,
            code=reply.code,
            usage=reply.usage,
            latency_ms=reply.latency_ms,
            cluster_id=-1,
        )
        if not reply.code.strip():
            why = "the reply held no code"
            return _Round(outcome(DROPPED, why, reply=reply), why, attempt)
        if same_program(attempt, best):
            # Nothing to assess or keep: the attempt is the best answer again, at most re-laid out.
            why = f"the program is the same as {best.id}'s"
            return _Round(outcome(DROPPED, why, reply=reply), why, attempt)
        try:
            assessed, own = await self._assess(run, attempt, swarm_best, ranking)
        except StageError as exc:
            return _Round(outcome(DROPPED, str(exc), reply=reply), str(exc), go_on=False)
        await log.assessed(assessed)
        verdict = keep_or_drop(own, best)
        kind = KEPT if verdict.kept else DROPPED
        result = outcome(kind, verdict.why, reply=reply, overall=own.overall, candidate_id=attempt.id)
        return _Round(result, verdict.why, assessed)

    async def _assess(
        self, run: RunContext, attempt: pb.Candidate, swarm_best: pb.Candidate, ranking: Ranking
    ) -> tuple[pb.Candidate, common_pb2.Scores]:
        """The attempt assessed like any candidate, and its own assessment scores.

        As a candidate it inherits the swarm evidence of the answer it was built from (agreement,
        cluster share, dual agreement), so its overall sits on the ranking's scale.
        """
        request = assess_request(run.run_id, run.task, [attempt], attached=run.attached_tests)
        response = await assess(self._calls, request, self._config.stage_timeout_s)
        assessment = response.assessments[0]
        candidate = pb.Candidate()
        candidate.CopyFrom(attempt)
        candidate.scores.CopyFrom(assessment.scores)
        candidate.scores.consensus = swarm_best.scores.consensus
        candidate.scores.dual_agreement = swarm_best.scores.dual_agreement
        candidate.scores.behaviour_cluster_size = swarm_best.scores.behaviour_cluster_size
        candidate.scores.overall = selection(candidate, ranking.shares.get(swarm_best.id, 0.0))
        candidate.tests.extend(assessment.tests)
        candidate.error = assessment.error
        candidate.limit = assessment.limit
        return candidate, assessment.scores
