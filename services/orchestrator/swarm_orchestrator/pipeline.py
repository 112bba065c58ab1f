"""One swarm run from acceptance to answer, as its stages in order; the only code that writes the Run.

gather (fan-out and test writing) -> assess -> collate -> rank (``ranking.rank``; an adaptive run
gathers more and judges all its answers again while they are not settled, ``growth``) -> refine
(``refinement``, each attempt kept or dropped by ``refinement.keep_or_drop``) -> settle the
consensus (``consensus.consensus_for``) -> gate (``gating``: used, held or failed) -> store.
Each stage returns a value; what arrives on the way (answers, failures, tokens spent, refinement
attempts) goes to the run's ``Journal`` at once, so a run that fails or is interrupted still
stores it. docs/selection.md gives the rules, README.md ("One run, step by step") the whole path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from swarm.v1 import assessor_pb2, common_pb2, orchestrator_pb2 as pb
from swarmlib import (
    QuorumNotReachedError,
    ResourceExhaustedError,
    StageError,
    StoreUnavailableError,
    SwarmError,
    error_id,
    internal_error_message,
)

from . import gating
from .admission import Admitted
from .config import OrchestratorConfig
from .consensus import consensus_for
from .fanout import Fanout, FanoutSettings, Gathered, in_slot_order
from .growth import Growth, Judged, grow
from .journal import Journal
from .pool import InstancePool
from .ranking import Ranking, rank
from .refinement import Refinement, RefinementResult, RunContext
from .reputation import assessment_events, multiplier_for
from .stages import Collation, StageCalls, assess, assess_request, assessed, collate, collated
from .store import RunStore
from .tests_writer import write_tests

log = logging.getLogger(__name__)

Emit = Callable[[pb.RunSwarmResponse], Awaitable[None]]
# Waits for the run queue to start the run, streaming its place through the Emit it is given.
Admit = Callable[[Emit], Awaitable[Admitted]]


@dataclass(frozen=True)
class RunOptions:
    """What the caller asked for, beyond the task."""

    allowed: list[str]
    refine: bool
    timeout_s: float
    attached_tests: list[str] = field(default_factory=list)
    # Stream each answer's text as it is generated (instance_output events).
    stream_output: bool = False
    # The caller's tenant: its runs' reputation is the one that weighs this run's votes.
    tenant: str = "default"
    # The instance of each answer slot, as the run queue admitted the run (empty: the pool picks).
    assignment: tuple[str, ...] = ()
    # Waits in the run queue at the door until the run may start (None: it starts at once).
    admit: Admit | None = None
    # An adaptive run's rounds (``growth``; None: all of the swarm at once).
    growth: Growth | None = None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Outcome:
    """Everything a run that reached an answer found, ready to be written into its Run."""

    assessment: assessor_pb2.AssessResponse
    collation: Collation
    candidates: list[pb.Candidate]  # ranked first to last, then the dropped attempt (rank 0)
    final: pb.Candidate
    consensus: common_pb2.Consensus
    refinement: pb.Refined | None
    gate: common_pb2.GateDecision


class Pipeline:
    """Runs accepted runs; every step is streamed through ``emit`` and stored."""

    def __init__(
        self, config: OrchestratorConfig, pool: InstancePool, fanout: Fanout, calls: StageCalls, store: RunStore
    ) -> None:
        self._config = config
        self._pool = pool
        self._fanout = fanout
        self._calls = calls
        self._store = store
        self._refinement = Refinement(config, pool, calls)
        self._driving: set[str] = set()
        self._metrics = fanout.metrics

    @property
    def pool(self) -> InstancePool:
        return self._pool

    @property
    def driving(self) -> frozenset[str]:
        """The runs this pipeline drives now: the leases the heartbeat renews (``lease.Leases``)."""
        return frozenset(self._driving)

    async def execute(self, run: pb.Run, options: RunOptions, emit: Emit) -> tuple[pb.Run, SwarmError | None]:
        """Drive ``run`` (already stored as RUNNING) to its end and store the outcome.

        Returns the run and, when it failed, the domain error to report to the caller. Raises
        ``StoreUnavailableError`` when its end could not be stored (its lease then runs out and a
        sweep closes it from its rows) or a sweep had already closed it.
        """
        self._driving.add(run.id)
        try:
            return await self._execute(run, options, emit)
        finally:
            self._driving.discard(run.id)

    async def _execute(self, run: pb.Run, options: RunOptions, emit: Emit) -> tuple[pb.Run, SwarmError | None]:
        journal = Journal(self._store, run.id)
        error: SwarmError | None = None
        try:
            outcome = await self._stages(run, options, emit, journal)
        except (QuorumNotReachedError, StageError, ResourceExhaustedError) as exc:
            _write_failure(run, journal, str(exc))
            error = exc
        except BaseException as exc:
            _write_failure(run, journal, _interrupted(run.id, exc))
            run.finished_at.FromDatetime(_now())
            await asyncio.shield(self._store.finish_run(run))
            self._metrics.run_ended(run)
            raise
        else:
            _write_outcome(run, journal, outcome, gating.verdict(outcome.gate, _now()))
        run.finished_at.FromDatetime(_now())
        stored = await self._store.finish_run(run, assessment_events(run))
        self._metrics.run_ended(run)
        if not stored:
            raise StoreUnavailableError(
                f"run {run.id} was closed as interrupted before its end could be stored: this orchestrator "
                "could not renew its lease in time (the store was unreachable, or the process stalled)"
            )
        return run, error

    async def _stages(self, run: pb.Run, options: RunOptions, emit: Emit, journal: Journal) -> Outcome:
        """The stages in order, each taking what the ones before it returned."""
        if options.admit is not None:
            admitted = await options.admit(emit)
            run.queue_wait_ms = admitted.waited_ms
            options = dataclasses.replace(options, assignment=admitted.assignment, admit=None)
        if options.growth is not None and not options.assignment:
            assignment = tuple(self._pool.assign(run.swarm_size, options.allowed))
            options = dataclasses.replace(options, assignment=assignment)
        stage = self._metrics.stage  # each stage's time (docs/metrics.md)
        with stage("gather"):
            gathered, generated = await self._gather(run, options, emit, journal)

        async def judge(answers: list[pb.Candidate]) -> Judged:
            return await self._judge(run, answers, generated, options, emit, journal)

        judged = await judge(gathered.candidates)
        if options.growth is not None:

            async def more(first: int, count: int) -> list[pb.Candidate]:
                with stage("gather"):
                    settings = self._settings(run, options)
                    return (await self._fanout.run(settings, count, emit, journal, first)).candidates

            judged = await grow(options.growth, gathered.candidates, judged, more, judge, emit)
        assessment, collation, ranking = judged.assessment, judged.collation, judged.ranking
        with stage("refine"):
            refinement = await self._refine(run, options, collation, ranking, emit, journal) if options.refine else None
        final, stored = _answer(ranking, refinement)
        consensus = consensus_for(collation.consensus, collation.clusters, final, ranking.best)
        with stage("gate"):
            gate = await self._gate(run, final, [c for c in stored if c.id != final.id], consensus, emit)
        summary = refinement.summary if refinement is not None else None
        return Outcome(assessment, collation, stored, final, consensus, summary, gate)

    async def _gather(
        self, run: pb.Run, options: RunOptions, emit: Emit, journal: Journal
    ) -> tuple[Gathered, list[str]]:
        """The swarm's answers (an adaptive run's first round) and, at the same time, the tests its
        instances write; every answer is stored, and the run goes on only with a quorum of them."""
        settings = self._settings(run, options)
        size = options.growth.start if options.growth is not None else run.swarm_size
        async with asyncio.TaskGroup() as group:
            tests = group.create_task(
                write_tests(
                    self._pool,
                    self._fanout.client,
                    run_id=run.id,
                    task=run.task,
                    allowed=options.allowed,
                    writers=self._config.test_writers,
                    timeout_s=options.timeout_s,
                    max_tokens=self._config.max_tokens,
                    spent=journal.spent,
                )
            )
            answers = group.create_task(self._fanout.run(settings, size, emit, journal))
        gathered = answers.result()
        if len(gathered.candidates) < run.quorum:
            failed = sorted({f.instance for f in gathered.failures})
            raise QuorumNotReachedError(
                f"quorum not reached: {len(gathered.candidates)} of {size} responses arrived, "
                f"{run.quorum} needed; failing instances: {', '.join(failed) or 'none'} "
                f"(see the failures of run {run.id})"
            )
        return gathered, tests.result()

    def _settings(self, run: pb.Run, options: RunOptions) -> FanoutSettings:
        return FanoutSettings(
            run_id=run.id,
            task=run.task,
            timeout_s=options.timeout_s,
            max_tokens=self._config.max_tokens,
            allowed=options.allowed,
            output_batch_s=self._config.output_batch_ms / 1000 if options.stream_output else None,
            assignment=options.assignment,
        )

    async def _judge(
        self,
        run: pb.Run,
        answers: list[pb.Candidate],
        generated: list[str],
        options: RunOptions,
        emit: Emit,
        journal: Journal,
    ) -> Judged:
        """Assess, collate and rank ``answers`` together (an adaptive run: all of its rounds')."""
        stage = self._metrics.stage
        with stage("assess"):
            assessment, candidates = await self._assess(run, answers, generated, options, emit)
        journal.assessment = assessment
        with stage("collate"):
            collation, candidates = await self._collate(run, candidates, emit)
        journal.collation = collation
        return Judged(assessment, collation, rank(candidates, await self._reputations(candidates, options.tenant)))

    async def _assess(
        self, run: pb.Run, answers: list[pb.Candidate], generated: list[str], options: RunOptions, emit: Emit
    ) -> tuple[assessor_pb2.AssessResponse, list[pb.Candidate]]:
        request = assess_request(run.id, run.task, answers, generated, options.attached_tests)
        assessment = await assess(self._calls, request, self._config.stage_timeout_s)
        by_id = {a.candidate_id: a for a in assessment.assessments}
        candidates = [assessed(c, by_id[c.id], assessment.probes > 0) for c in answers]
        best = max(candidates, key=lambda c: (c.scores.overall, c.scores.tests_passed))
        event = pb.Assessed(
            tests_found=assessment.tests_found, best_candidate_id=best.id, best_overall=best.scores.overall
        )
        await emit(pb.RunSwarmResponse(assessed=event))
        return assessment, candidates

    async def _collate(
        self, run: pb.Run, candidates: list[pb.Candidate], emit: Emit
    ) -> tuple[Collation, list[pb.Candidate]]:
        collation = await collate(self._calls, run.id, candidates, self._config.stage_timeout_s)
        event = pb.Collated(cluster_count=len(collation.clusters), consensus=collation.consensus)
        await emit(pb.RunSwarmResponse(collated=event))
        return collation, [collated(c, collation) for c in candidates]

    async def _refine(
        self,
        run: pb.Run,
        options: RunOptions,
        collation: Collation,
        ranking: Ranking,
        emit: Emit,
        journal: Journal,
    ) -> RefinementResult:
        context = RunContext(
            run_id=run.id,
            task=run.task,
            analysis=collation.analysis,
            consensus=collation.consensus,
            clusters=collation.clusters,
            allowed=options.allowed,
            attached_tests=options.attached_tests,
        )
        return await self._refinement.refine(context, ranking, emit, journal)

    async def _gate(
        self,
        run: pb.Run,
        final: pb.Candidate,
        others: list[pb.Candidate],
        consensus: common_pb2.Consensus,
        emit: Emit,
    ) -> common_pb2.GateDecision:
        gate = await gating.decide(self._calls, run.id, final, others, consensus, self._config.stage_timeout_s)
        await emit(pb.RunSwarmResponse(gated=gate))
        return gate

    async def _reputations(self, candidates: Sequence[pb.Candidate], tenant: str) -> list[float]:
        """Each candidate's vote multiplier from its instance's (else model's) history in the run's
        tenant (SWARM_REPUTATION_SCOPE); all 1.0 when SWARM_REPUTATION is off or nothing is known yet."""
        if not self._config.reputation:
            return [1.0] * len(candidates)
        snapshot = await self._store.reputation(tenant)
        scope = self._config.reputation_scope
        return [multiplier_for(snapshot, c.instance, c.model, scope) for c in candidates]


def _answer(ranking: Ranking, refinement: RefinementResult | None) -> tuple[pb.Candidate, list[pb.Candidate]]:
    """The final answer and the candidates as stored: a kept refinement leads the ranking; with
    none kept, the last assessed attempt follows it unranked (rank 0), for the record."""
    ranked = list(ranking.candidates)
    dropped = None
    if refinement is not None and refinement.kept is not None:
        ranked.insert(0, refinement.kept)
    elif refinement is not None:
        dropped = refinement.dropped
    stored = [_ranked(candidate, position) for position, candidate in enumerate(ranked, start=1)]
    return stored[0], stored + ([dropped] if dropped is not None else [])


def _ranked(candidate: pb.Candidate, position: int) -> pb.Candidate:
    copy = pb.Candidate()
    copy.CopyFrom(candidate)
    copy.rank = position
    return copy


def _interrupted(run_id: str, exc: BaseException) -> str:
    """Why a run stopped, as stored and streamed: a domain error or a cancellation in words, any
    other exception (a bug; its text may hold SQL and the task) by its error id only."""
    if isinstance(exc, SwarmError) or not isinstance(exc, Exception):
        return f"run interrupted: {type(exc).__name__}: {exc}"
    log.error("run %s: error %s: unexpected %s", run_id, error_id(exc), type(exc).__name__, exc_info=exc)
    return f"run interrupted: {internal_error_message(exc)}"


def _write_failure(run: pb.Run, journal: Journal, error: str) -> None:
    """A run without an answer still records every answer and failure that arrived, unranked,
    and what the stages that finished found."""
    run.status = pb.RUN_STATUS_FAILED
    run.error = error
    run.candidates.extend(in_slot_order(journal.answers))
    run.failures.extend(journal.failures)
    run.usage.CopyFrom(journal.usage)
    if journal.assessment is not None:
        run.tests_found = journal.assessment.tests_found
        run.generated_tests = journal.assessment.generated_tests_kept
    if journal.collation is not None:
        run.analysis = journal.collation.analysis
        run.clusters.extend(journal.collation.clusters)
        run.consensus.CopyFrom(journal.collation.consensus)


def _write_outcome(run: pb.Run, journal: Journal, outcome: Outcome, verdict: gating.Verdict) -> None:
    run.failures.extend(journal.failures)
    run.usage.CopyFrom(journal.usage)
    run.tests_found = outcome.assessment.tests_found
    run.generated_tests = outcome.assessment.generated_tests_kept
    run.analysis = outcome.collation.analysis
    run.clusters.extend(outcome.collation.clusters)
    run.consensus.CopyFrom(outcome.consensus)
    run.candidates.extend(outcome.candidates)
    if outcome.refinement is not None:
        run.refinement.CopyFrom(outcome.refinement)
    final = outcome.final
    run.final.CopyFrom(
        pb.FinalAnswer(
            candidate_id=final.id, code=final.code, text=final.text, overall=final.scores.overall, origin=final.origin
        )
    )
    run.gate.CopyFrom(outcome.gate)
    run.status = verdict.status
    run.error = verdict.error
    if verdict.held is not None:
        run.audit.append(verdict.held)
