"""One swarm run from acceptance to answer: fan-out, collate, assess, rank, refine, gate, store."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import grpc

from swarm.v1 import (
    assessor_pb2,
    assessor_pb2_grpc,
    collator_pb2,
    collator_pb2_grpc,
    common_pb2,
    orchestrator_pb2 as pb,
    refiner_pb2,
    refiner_pb2_grpc,
)
from swarmlib import (
    QuorumNotReachedError,
    StageError,
    SwarmError,
    assessment_score,
    cluster_shares,
    dual_agreement,
    evidence_score,
    selection_score,
    vote_weights,
)

from .config import OrchestratorConfig
from .fanout import Fanout, FanoutResult, FanoutSettings
from .pool import InstancePool
from .reputation import assessment_events, multiplier_for
from .store import RunStore
from .tests_writer import write_tests

log = logging.getLogger(__name__)
Emit = Callable[[pb.RunSwarmResponse], Awaitable[None]]
GATES_ACTOR = "swarm-gates"


@dataclass(frozen=True)
class RunOptions:
    """What the caller asked for, beyond the task."""

    allowed: list[str]
    refine: bool
    timeout_s: float
    attached_tests: list[str] = field(default_factory=list)


class Stages:
    """Stubs of the downstream services, one channel each."""

    def __init__(
        self,
        collator: collator_pb2_grpc.CollatorServiceStub,
        assessor: assessor_pb2_grpc.AssessorServiceStub,
        refiner: refiner_pb2_grpc.RefinerServiceStub,
    ) -> None:
        self.collator = collator
        self.assessor = assessor
        self.refiner = refiner


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _stage_error(stage: str, exc: grpc.aio.AioRpcError) -> StageError:
    return StageError(f"{stage} failed: {exc.code().name}: {exc.details()}")


def _code_of(candidate: pb.Candidate) -> common_pb2.CandidateCode:
    return common_pb2.CandidateCode(
        id=candidate.id, text=candidate.text, code=candidate.code, behaviour=candidate.behaviour
    )


def _rank_key(candidate: pb.Candidate) -> tuple[float, int, float]:
    return (-candidate.scores.overall, -candidate.scores.tests_passed, candidate.latency_ms)


def _cluster_keys(candidates: list[pb.Candidate]) -> list[int]:
    """Behaviour cluster of each candidate: equal non-empty signatures, else the collator's cluster."""
    keys: dict[str, int] = {}
    result = []
    for index, candidate in enumerate(candidates):
        if candidate.behaviour:
            key = f"b:{candidate.behaviour}"
        elif candidate.cluster_id >= 0 and not any(c.behaviour for c in candidates):
            key = f"s:{candidate.cluster_id}"
        else:
            key = f"alone:{index}"
        result.append(keys.setdefault(key, len(keys)))
    return result


def _selection(candidate: pb.Candidate, share: float) -> float:
    s = candidate.scores
    evidence = evidence_score(
        dual=s.dual_agreement,
        share=share,
        centrality=s.consensus,
        completeness=s.completeness,
        style=s.style,
    )
    return selection_score(s.tests_passed, s.tests_total, s.correctness >= 1.0, evidence)


def _weights(candidates: list[pb.Candidate]) -> list[float]:
    """Vote weights: per model ``1/sqrt(n)``, times each candidate's reputation multiplier (set by
    ``_rank``; 1.0 while unset), so a refinement's share is computed on the ranking's scale."""
    return vote_weights([c.model or c.instance for c in candidates], [c.reputation or 1.0 for c in candidates])


def _share_of(candidate_id: str, candidates: list[pb.Candidate]) -> float:
    """The weighted share of the swarm in ``candidate_id``'s cluster, as ``_rank`` computed it."""
    shares = cluster_shares(_cluster_keys(candidates), _weights(candidates))
    return next((share for c, share in zip(candidates, shares, strict=True) if c.id == candidate_id), 0.0)


def _rank(run: pb.Run, candidates: list[pb.Candidate], reputations: Sequence[float] | None = None) -> None:
    """Score every candidate with the selection formula and sort best first (see ``_scoring``).

    ``reputations`` are the candidates' vote multipliers from their sources' history (1.0 each
    when absent): they weigh agreement, never the visible tests.
    """
    for candidate, multiplier in zip(candidates, reputations or [1.0] * len(candidates), strict=True):
        candidate.reputation = multiplier
    clusters = _cluster_keys(candidates)
    weights = _weights(candidates)
    duals = dual_agreement(clusters, [c.scores.generated_passed for c in candidates], weights)
    shares = cluster_shares(clusters, weights)
    sizes = {key: clusters.count(key) for key in set(clusters)}
    for candidate, key, dual, share in zip(candidates, clusters, duals, shares, strict=True):
        candidate.scores.dual_agreement = dual
        candidate.scores.behaviour_cluster_size = sizes[key]
        candidate.scores.overall = _selection(candidate, share)
    candidates.sort(key=_rank_key)


def _consensus_for(run: pb.Run, final: pb.Candidate, best: pb.Candidate) -> common_pb2.Consensus:
    """The run's consensus as it stands for ``final``: claimed only for an answer that is the
    majority's and that tests support.

    The collator says whether most responses agree; that agreement supports the final answer only
    when the answer belongs to the majority cluster and executed evidence backs it.
    """
    consensus = common_pb2.Consensus()
    consensus.CopyFrom(run.consensus)
    if not consensus.reached:
        return consensus
    majority = next((c for c in run.clusters if c.id == consensus.majority_cluster_id), None)
    # A kept refinement speaks for the swarm answer it improved (the best-ranked one).
    member = best.id if final.origin == pb.CANDIDATE_ORIGIN_REFINED else final.id
    in_majority = majority is not None and member in majority.candidate_ids
    supported = _independently_supported(final if final.scores.tests_total else best, consensus.share)
    if not (in_majority and supported):
        consensus.reached = False
    return consensus


def _settle_consensus(run: pb.Run, final: pb.Candidate, best: pb.Candidate) -> None:
    run.consensus.CopyFrom(_consensus_for(run, final, best))


# Without a test the user stated, agreement must be this broad (of the collator's clusters) for a claim.
UNTESTED_CONSENSUS_SHARE = 2 / 3


def _independently_supported(candidate: pb.Candidate, share: float) -> bool:
    """Executed evidence beyond agreement itself: every visible test passes or, with none, the
    answer has the run's best dual agreement, passes at least half of the generated tests and
    its cluster holds at least two thirds of the swarm (``share``, the collator's).

    Agreement alone is weak when the programs were written by one model from one prompt: they
    tend to share their mistakes, so code with no test at all never gets a consensus claim, and
    tests the swarm wrote itself share those mistakes too, so without the user's own tests a
    bare majority (3 of 5) is not enough. Prose answers (no code) keep the collator's verdict.
    """
    scores = candidate.scores
    if scores.tests_total:
        return scores.tests_passed == scores.tests_total
    if scores.generated_total:
        return (
            scores.dual_agreement >= 1.0
            and 2 * scores.generated_passed >= scores.generated_total
            and share >= UNTESTED_CONSENSUS_SHARE - 1e-9
        )
    return not candidate.code.strip()


def _gate_subject(candidate: pb.Candidate) -> assessor_pb2.GateCandidate:
    return assessor_pb2.GateCandidate(
        candidate_id=candidate.id,
        scores=candidate.scores,
        tests=candidate.tests,
        error=candidate.error,
        limit=candidate.limit,
    )


def _gates_unavailable(exc: grpc.aio.AioRpcError) -> common_pb2.GateDecision:
    """Without a verdict the answer waits for a person: a gate that cannot be checked is not passed."""
    detail = f"gate evaluation failed: {exc.code().name}: {exc.details()}"
    rule = common_pb2.GateRuleResult(
        name="gates_evaluated",
        kind="gates_evaluated",
        passed=False,
        on_fail=common_pb2.GATE_OUTCOME_NEEDS_APPROVAL,
        detail=detail,
    )
    return common_pb2.GateDecision(
        outcome=common_pb2.GATE_OUTCOME_NEEDS_APPROVAL,
        rules=[rule],
        deciding_rules=[rule.name],
        summary=f"needs approval: gates_evaluated ({detail})",
    )


def _settle_status(run: pb.Run) -> None:
    """A run with an answer ends as its gate decision says: used, held for approval, or failed."""
    outcome = run.gate.outcome
    if outcome == common_pb2.GATE_OUTCOME_FAIL:
        run.status = pb.RUN_STATUS_FAILED
        run.error = f"the quality gates failed the answer: {run.gate.summary}"
    elif outcome == common_pb2.GATE_OUTCOME_NEEDS_APPROVAL:
        run.status = pb.RUN_STATUS_NEEDS_APPROVAL
        held = pb.AuditEntry(actor=GATES_ACTOR, action=pb.AUDIT_ACTION_HELD, comment=run.gate.summary)
        held.time.FromDatetime(_now())
        run.audit.append(held)
    else:
        run.status = pb.RUN_STATUS_SUCCEEDED


def _same_program(a: pb.Candidate, b: pb.Candidate) -> bool:
    """Equal code (else text) once whitespace is ignored: a rewrite that changes only layout changes nothing."""
    return "".join((a.code or a.text).split()) == "".join((b.code or b.text).split())


def _keep_gathered(run: pb.Run, gathered: FanoutResult) -> None:
    """A failed run still records every answer and failure that arrived, unranked."""
    if not run.candidates:
        run.candidates.extend(gathered.candidates)
    if not run.failures:
        run.failures.extend(gathered.failures)


def _add_usage(total: common_pb2.Usage, usage: common_pb2.Usage) -> None:
    total.prompt_tokens += usage.prompt_tokens
    total.completion_tokens += usage.completion_tokens
    total.cost_usd += usage.cost_usd


class Pipeline:
    """Runs accepted runs; every step is streamed through ``emit`` and stored."""

    def __init__(
        self, config: OrchestratorConfig, pool: InstancePool, fanout: Fanout, stages: Stages, store: RunStore
    ) -> None:
        self._config = config
        self._pool = pool
        self._fanout = fanout
        self._stages = stages
        self._store = store

    async def execute(self, run: pb.Run, options: RunOptions, emit: Emit) -> tuple[pb.Run, SwarmError | None]:
        """Drive ``run`` (already stored as RUNNING) to its end and store the outcome.

        Returns the run and, when it failed, the domain error to report to the caller.
        """
        error: SwarmError | None = None
        gathered = FanoutResult(candidates=[], failures=[])
        try:
            await self._execute(run, options, emit, gathered)
            _settle_status(run)
        except (QuorumNotReachedError, StageError) as exc:
            run.status = pb.RUN_STATUS_FAILED
            run.error = str(exc)
            error = exc
            _keep_gathered(run, gathered)
        except BaseException as exc:
            run.status = pb.RUN_STATUS_FAILED
            run.error = f"run interrupted: {type(exc).__name__}: {exc}"
            run.finished_at.FromDatetime(_now())
            _keep_gathered(run, gathered)
            await asyncio.shield(self._store.finish_run(run))
            raise
        run.finished_at.FromDatetime(_now())
        await self._store.finish_run(run, assessment_events(run))
        return run, error

    async def _execute(self, run: pb.Run, options: RunOptions, emit: Emit, result: FanoutResult) -> None:
        async def record(event: pb.RunSwarmResponse) -> None:
            if event.HasField("instance_failed"):
                await self._store.add_failure(run.id, event.instance_failed)
            await emit(event)

        settings = FanoutSettings(
            run_id=run.id,
            task=run.task,
            timeout_s=options.timeout_s,
            max_tokens=self._config.max_tokens,
            allowed=options.allowed,
        )
        async with asyncio.TaskGroup() as group:
            generated = group.create_task(
                write_tests(
                    self._pool,
                    self._fanout.client,
                    run_id=run.id,
                    task=run.task,
                    allowed=options.allowed,
                    writers=self._config.test_writers,
                    timeout_s=options.timeout_s,
                    max_tokens=self._config.max_tokens,
                )
            )
            group.create_task(self._fanout.run(settings, run.swarm_size, record, result))
        run.failures.extend(result.failures)
        for candidate in result.candidates:
            _add_usage(run.usage, candidate.usage)
            await self._store.add_candidate(run.id, candidate)
        if len(result.candidates) < run.quorum:
            failed = sorted({f.instance for f in result.failures})
            raise QuorumNotReachedError(
                f"quorum not reached: {len(result.candidates)} of {run.swarm_size} responses arrived, "
                f"{run.quorum} needed; failing instances: {', '.join(failed) or 'none'} "
                f"(see the failures of run {run.id})"
            )
        candidates = list(result.candidates)
        await self._assess(run, candidates, generated.result(), options.attached_tests, emit)
        await self._collate(run, candidates, emit)
        _rank(run, candidates, await self._reputations(candidates))
        best = candidates[0]
        final = best
        dropped: pb.Candidate | None = None
        if options.refine:
            refined, kept = await self._refine(run, candidates, options, emit)
            if refined is not None and kept:
                final = refined
                candidates.insert(0, refined)
            else:
                dropped = refined
        for rank, candidate in enumerate(candidates, start=1):
            candidate.rank = rank
        _settle_consensus(run, final, best)
        run.candidates.extend(candidates)
        if dropped is not None:
            run.candidates.append(dropped)  # kept for the record, unranked (rank 0)
        run.final.CopyFrom(
            pb.FinalAnswer(
                candidate_id=final.id,
                code=final.code,
                text=final.text,
                overall=final.scores.overall,
                origin=final.origin,
            )
        )
        await self._gate(run, final, emit)

    async def _reputations(self, candidates: list[pb.Candidate]) -> list[float]:
        """Each candidate's vote multiplier from its instance's (else model's) history; all 1.0 when
        SWARM_REPUTATION is off or nothing is known yet."""
        if not self._config.reputation:
            return [1.0] * len(candidates)
        snapshot = await self._store.reputation()
        return [multiplier_for(snapshot, c.instance, c.model) for c in candidates]

    async def _gate(self, run: pb.Run, final: pb.Candidate, emit: Emit) -> None:
        """Ask the assessor to judge the final answer against the quality gates; store the verdict."""
        others = [c for c in run.candidates if c.id != final.id]
        decision = await self._decide_gates(run, final, others, run.consensus)
        run.gate.CopyFrom(decision)
        await emit(pb.RunSwarmResponse(gated=decision))

    async def _decide_gates(
        self, run: pb.Run, final: pb.Candidate, others: Sequence[pb.Candidate], consensus: common_pb2.Consensus
    ) -> common_pb2.GateDecision:
        """The gates' verdict on ``final`` as the run's answer; NEEDS_APPROVAL when it cannot be had."""
        request = assessor_pb2.EvaluateGatesRequest(
            run_id=run.id,
            final=_gate_subject(final),
            others=[_gate_subject(c) for c in others],
            consensus=consensus,
        )
        try:
            response = await self._stages.assessor.EvaluateGates(request, timeout=self._config.stage_timeout_s)
        except grpc.aio.AioRpcError as exc:
            log.warning("run %s: gate evaluation failed: %s", run.id, exc.details())
            return _gates_unavailable(exc)
        decision: common_pb2.GateDecision = response.decision
        return decision

    async def _collate(self, run: pb.Run, candidates: list[pb.Candidate], emit: Emit) -> None:
        """Clusters and consensus; a collator outage degrades the run instead of failing it."""
        request = collator_pb2.CollateRequest(run_id=run.id, candidates=[_code_of(c) for c in candidates])
        try:
            response = await self._stages.collator.Collate(request, timeout=self._config.stage_timeout_s)
        except grpc.aio.AioRpcError as exc:
            log.warning("run %s: collation unavailable: %s", run.id, exc.details())
            run.analysis = f"collation unavailable ({exc.code().name}: {exc.details()}); ranked without consensus"
            await emit(pb.RunSwarmResponse(collated=pb.Collated(cluster_count=0, consensus=run.consensus)))
            return
        by_id = {c.id: c for c in candidates}
        if sorted(s.candidate_id for s in response.similarities) != sorted(by_id):
            run.analysis = "collation unusable (not every candidate was described); ranked without consensus"
            log.warning("run %s: %s", run.id, run.analysis)
            await emit(pb.RunSwarmResponse(collated=pb.Collated(cluster_count=0, consensus=run.consensus)))
            return
        for similarity in response.similarities:
            candidate = by_id[similarity.candidate_id]
            candidate.scores.consensus = similarity.centrality
            candidate.cluster_id = similarity.cluster_id
        run.consensus.CopyFrom(response.consensus)
        run.clusters.extend(response.clusters)
        run.analysis = response.analysis
        await emit(
            pb.RunSwarmResponse(
                collated=pb.Collated(cluster_count=len(response.clusters), consensus=response.consensus)
            )
        )

    async def _assess(
        self,
        run: pb.Run,
        candidates: list[pb.Candidate],
        generated: list[str],
        attached: list[str],
        emit: Emit,
    ) -> None:
        response = await self._assess_codes(run, [_code_of(c) for c in candidates], generated, attached)
        run.tests_found = response.tests_found
        run.generated_tests = response.generated_tests_kept
        by_id = {a.candidate_id: a for a in response.assessments}
        for candidate in candidates:
            assessment = by_id[candidate.id]
            candidate.scores.CopyFrom(assessment.scores)
            candidate.tests.extend(assessment.tests)
            candidate.error = assessment.error
            candidate.limit = assessment.limit
            # With no probe inputs every program "behaves" alike; that says nothing, so drop it.
            candidate.behaviour = assessment.behaviour if response.probes else ""
        best = max(candidates, key=lambda c: (c.scores.overall, c.scores.tests_passed))
        await emit(
            pb.RunSwarmResponse(
                assessed=pb.Assessed(
                    tests_found=response.tests_found, best_candidate_id=best.id, best_overall=best.scores.overall
                )
            )
        )

    async def _assess_codes(
        self,
        run: pb.Run,
        codes: list[common_pb2.CandidateCode],
        generated: Sequence[str] = (),
        attached: Sequence[str] = (),
    ) -> assessor_pb2.AssessResponse:
        request = assessor_pb2.AssessRequest(
            run_id=run.id, task=run.task, candidates=codes, generated_tests=generated, attached_tests=attached
        )
        try:
            response: assessor_pb2.AssessResponse = await self._stages.assessor.Assess(
                request, timeout=self._config.stage_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise _stage_error("assessment", exc) from exc
        missing = {c.id for c in codes} - {a.candidate_id for a in response.assessments}
        if missing:
            raise StageError(f"assessment failed: the assessor returned nothing for {sorted(missing)}")
        return response

    def _refiner_instance(self, best: pb.Candidate, allowed: list[str]) -> str | None:
        """The best candidate's instance, else another healthy one the run may use."""
        if best.instance in allowed and self._pool.is_healthy(best.instance):
            return best.instance
        healthy = [n for n in allowed if self._pool.is_healthy(n)]
        return healthy[0] if healthy else None

    async def _refine(
        self, run: pb.Run, ranked: list[pb.Candidate], options: RunOptions, emit: Emit
    ) -> tuple[pb.Candidate | None, bool]:
        """Refinement rounds while the answer is unsettled and the budget allows; each attempt is
        kept only if it assesses at least as well as the best answer so far (assessment score and
        visible tests passed both >= the best's).

        An answer is settled when every visible test passes, the swarm's tested consensus is on
        it and the quality gates pass it: a rewrite could then only trade that evidence for
        style, so refinement is skipped. After round 1, another round runs only while the best so
        far fails a visible test or the gates (consensus is the swarm's and no rewrite moves it),
        within SWARM_REFINE_ROUNDS, and only while the SWARM_REFINE_BUDGET_S left covers the
        longest round so far; each call's deadline is the budget left. A round after a rejected
        attempt is shown that attempt and why it was rejected. Returns the last kept attempt,
        else the last attempt with a program (stored unranked), and whether it was kept;
        ``run.refinement`` sums up every round, whose own outcome is streamed as it happens.
        """
        best = ranked[0]
        loop = asyncio.get_running_loop()
        started = loop.time()
        settled = await self._settled(run, best, ranked)
        if settled:
            await self._refined(run, emit, kept=False, overall=0.0, reason=f"skipped: {settled}")
            return None, False
        kept: pb.Candidate | None = None
        last: pb.Candidate | None = None
        previous: refiner_pb2.RejectedAttempt | None = None
        outcomes: list[pb.Refined] = []
        longest = 0.0
        stopped = ""
        for number in range(1, self._config.refine_rounds + 1):
            left = self._config.refine_budget_s - (loop.time() - started)
            if number > 1:
                if not await self._worth_another_round(run, best, ranked):
                    break
                if left < longest:
                    spent = f"{max(left, 0.0):.1f} s of SWARM_REFINE_BUDGET_S left"
                    stopped = f"stopped: {spent}, a round took {longest:.1f} s"
                    break
            round_started = loop.time()
            candidate, outcome, go_on = await self._refine_round(
                run, ranked, best, number, previous, options, timeout_s=max(left, 0.1)
            )
            longest = max(longest, loop.time() - round_started)
            outcomes.append(outcome)
            reason = f"round {number}: {outcome.reason}" if self._config.refine_rounds > 1 else outcome.reason
            await self._refined(run, emit, kept=outcome.kept, overall=outcome.overall, reason=reason)
            previous = None
            if candidate is not None and outcome.kept:
                kept = best = candidate
            elif candidate is not None:
                last = candidate if outcome.candidate_id else last  # assessed, so it had a program
                previous = refiner_pb2.RejectedAttempt(
                    attempt=refiner_pb2.RefineInput(
                        candidate=_code_of(candidate), scores=candidate.scores, tests=candidate.tests
                    ),
                    reason=outcome.reason.removeprefix("dropped: "),
                    explanation=outcome.explanation,
                )
            if not go_on:
                break
        # The outcome of the attempt returned: the last kept, else the last with a program.
        about = kept or last
        decisive = next((o for o in reversed(outcomes) if about and o.candidate_id == about.id), outcomes[-1])
        summary = pb.Refined()
        summary.CopyFrom(decisive)
        summary.rounds = sum(o.rounds for o in outcomes)
        if len(outcomes) > 1 or stopped:
            rounds = "; ".join(f"round {i}: {o.reason}" for i, o in enumerate(outcomes, start=1))
            summary.reason = f"{decisive.reason} [{rounds}{'; ' + stopped if stopped else ''}]"
        run.refinement.CopyFrom(summary)
        return (kept, True) if kept is not None else (last, False)

    async def _settled(self, run: pb.Run, best: pb.Candidate, ranked: list[pb.Candidate]) -> str:
        """Why the swarm's best answer needs no refinement, or "" when it may gain from one."""
        if self._fails_a_visible_test(best) or not _consensus_for(run, best, best).reached:
            return ""
        if not await self._gates_pass(run, best, ranked):
            return ""
        tests = f"every visible test passes ({best.scores.tests_passed}/{best.scores.tests_total})"
        if not best.scores.tests_total:
            tests = "no visible test fails (the task states none)"
        return f"{tests}, the swarm's tested consensus is on the answer and the quality gates pass it"

    async def _worth_another_round(self, run: pb.Run, best: pb.Candidate, ranked: list[pb.Candidate]) -> bool:
        """Whether the best so far still fails something a rewrite can move: a visible test, or the gates."""
        return self._fails_a_visible_test(best) or not await self._gates_pass(run, best, ranked)

    async def _gates_pass(self, run: pb.Run, best: pb.Candidate, ranked: list[pb.Candidate]) -> bool:
        """Whether the gates would pass ``best`` (a swarm answer or a kept attempt) as the run's answer,
        with the consensus as it would then stand."""
        others = [c for c in ranked if c.id != best.id]
        decision = await self._decide_gates(run, best, others, _consensus_for(run, best, ranked[0]))
        return decision.outcome == common_pb2.GATE_OUTCOME_PASS

    async def _refine_round(
        self,
        run: pb.Run,
        ranked: list[pb.Candidate],
        best: pb.Candidate,
        number: int,
        previous: refiner_pb2.RejectedAttempt | None,
        options: RunOptions,
        *,
        timeout_s: float,
    ) -> tuple[pb.Candidate | None, pb.Refined, bool]:
        """One refinement call and its assessment against ``best`` (a swarm answer or a kept attempt).

        Returns the attempt (None when nothing came back; empty code when the reply held none), its
        outcome (``rounds`` is 1 when the refiner was called), and whether another round may follow:
        not after an outage of the refiner or the assessor, which another call would only repeat.
        """
        swarm_best = ranked[0]
        instance = self._refiner_instance(swarm_best, options.allowed)
        if instance is None:
            return None, pb.Refined(reason="skipped: no healthy instance"), False
        request = refiner_pb2.RefineRequest(
            run_id=run.id,
            task=run.task,
            analysis=run.analysis,
            instance=self._pool.instance_ref(instance),
            max_tokens=self._config.max_tokens,
            top=[
                refiner_pb2.RefineInput(candidate=_code_of(c), scores=c.scores, tests=c.tests)
                for c in self._refine_top(best, ranked)
            ],
            round=number,
            previous=previous,
        )
        try:
            timeout = min(self._config.stage_timeout_s, timeout_s)
            refined = await self._stages.refiner.Refine(request, timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            reason = f"skipped: refiner failed ({exc.code().name}: {exc.details()})"
            return None, pb.Refined(reason=reason, rounds=1), False
        _add_usage(run.usage, refined.usage)
        candidate = pb.Candidate(
            id=f"r{number}",
            origin=pb.CANDIDATE_ORIGIN_REFINED,
            instance=instance,
            model=self._pool.spec(instance).model,
            text=refined.text,
            code=refined.code,
            usage=refined.usage,
            latency_ms=refined.latency_ms,
            cluster_id=-1,
        )
        outcome = pb.Refined(
            rounds=1,
            explanation=refined.explanation,
            template_version=refined.template_version,
            candidate_id=candidate.id,
        )
        if not refined.code.strip():
            outcome.reason = "dropped: the reply held no code"
            outcome.candidate_id = ""
            return candidate, outcome, True
        if _same_program(candidate, best):
            # Nothing to assess or keep: the attempt is the best answer again, at most re-laid out.
            outcome.reason = f"dropped: the program is the same as {best.id}'s"
            outcome.candidate_id = ""
            return candidate, outcome, True
        try:
            response = await self._assess_codes(run, [_code_of(candidate)], [], options.attached_tests)
        except StageError as exc:
            outcome.reason = f"dropped: {exc}"
            outcome.candidate_id = ""
            return None, outcome, False
        assessment = response.assessments[0]
        candidate.scores.CopyFrom(assessment.scores)
        # Built from the top candidates, the refinement inherits the best one's swarm evidence
        # (agreement, cluster share, dual agreement), so its overall sits on the same scale.
        candidate.scores.consensus = swarm_best.scores.consensus
        candidate.scores.dual_agreement = swarm_best.scores.dual_agreement
        candidate.scores.behaviour_cluster_size = swarm_best.scores.behaviour_cluster_size
        candidate.scores.overall = _selection(candidate, _share_of(swarm_best.id, ranked))
        candidate.tests.extend(assessment.tests)
        candidate.error = assessment.error
        candidate.limit = assessment.limit
        await self._store.add_candidate(run.id, candidate)
        best_assessed = assessment_score(best.scores.correctness, best.scores.completeness, best.scores.style)
        outcome.overall = assessment.scores.overall
        tests = f"tests {assessment.scores.tests_passed}/{assessment.scores.tests_total}"
        if outcome.overall >= best_assessed and assessment.scores.tests_passed >= best.scores.tests_passed:
            outcome.kept = True
            outcome.reason = f"kept: assessed {outcome.overall:.3f} >= best {best.id} {best_assessed:.3f}, {tests}"
        else:
            outcome.reason = (
                f"dropped: assessed {outcome.overall:.3f} vs best {best.id} {best_assessed:.3f}, "
                f"{tests} vs {best.scores.tests_passed}/{best.scores.tests_total}"
            )
        return candidate, outcome, True

    @staticmethod
    def _fails_a_visible_test(candidate: pb.Candidate) -> bool:
        return candidate.scores.tests_passed < candidate.scores.tests_total

    @staticmethod
    def _refine_top(best: pb.Candidate, ranked: list[pb.Candidate], size: int = 3) -> list[pb.Candidate]:
        """``best``, then the best-ranked answers that behave differently, then other distinct code.

        Two answers that behave alike show the refiner nothing new (their diff is cosmetic, their
        tests agree), so one that differs on some probe input ranks ahead of them here.
        """
        chosen = [best]
        rest = [c for c in ranked if c.id != best.id]

        def differs(c: pb.Candidate) -> bool:
            return all(c.id != o.id and not _same_program(c, o) for o in chosen)

        def behaves_differently(c: pb.Candidate) -> bool:
            return bool(c.behaviour) and all(c.behaviour != o.behaviour for o in chosen) and differs(c)

        for keep in (behaves_differently, differs):
            for candidate in rest:
                if len(chosen) < size and keep(candidate):
                    chosen.append(candidate)
        return chosen

    async def _refined(self, run: pb.Run, emit: Emit, *, kept: bool, overall: float, reason: str) -> None:
        run.refinement.CopyFrom(pb.Refined(kept=kept, overall=overall, reason=reason))
        await emit(pb.RunSwarmResponse(refined=run.refinement))
