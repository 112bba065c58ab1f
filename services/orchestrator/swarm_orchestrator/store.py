"""Persistence of runs, candidates, failures, approvals, feedback and reputation (SQLAlchemy 2 async;
SQLite or PostgreSQL).

A run row is written when the run is accepted, each candidate and failure as it arrives, and the
final document when the run ends: a crash mid-run leaves a RUNNING row with everything gathered so
far, never a half-validated request.

What people add to a finished run (the approval trail, feedback) and the reputation events lives
in tables of its own, never in the run's document: several people may act on one run at once, and
rows can be added without rewriting (and racing on) the document. ``get_run`` joins them back.
Approving or rejecting is one conditional update (``status`` must still be NEEDS_APPROVAL), so two
approvers acting at once cannot both succeed, on SQLite or PostgreSQL.

Every run belongs to a tenant. The reads and decisions the callers reach take ``tenant`` and see
only that tenant's runs; a run of another tenant is "does not exist", word for word as a missing
one, so its existence does not leak. ``tenant=None`` (sweeps, tests) sees every tenant.

A RUNNING run is leased to the orchestrator driving it (``store_leases``); every transaction goes
through ``store_db.Database`` (one SQLite writer, bounded retries, ``StoreUnavailableError``).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Any, cast

from sqlalchemy import Select, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarmlib import FailedPreconditionError, NotFoundError

from . import store_approvals, store_leases, store_reports
from .reputation import Event, Key, Snapshot, Tally
from .store_budget import BudgetStore
from .store_db import Database
from .store_leases import LeaseTerms
from .store_queue import QueueStore
from .store_rows import (
    DEFAULT_TENANT,
    AuditRow,
    CandidateRow,
    FailureRow,
    FeedbackRow,
    ReputationEventRow,
    RunRow,
    as_utc,
    audit_entry,
    create_or_upgrade,
    decode_token,
    encode_token,
    event_rows,
    feedback_message,
    parse_document,
    run_document,
    run_from_rows,
    run_summary,
    status_name,
    to_json,
    utc_now,
)

log = logging.getLogger(__name__)
_SCHEMA_LOCK = 0x5357_4152  # the PostgreSQL advisory lock taken around the schema at open


class _Fenced(Exception):
    """A run's end was not written: the run is no longer RUNNING under this store's lease."""


class RunStore:
    """The orchestrator's only door to the database."""

    def __init__(self, db: Database, lease: LeaseTerms) -> None:
        self._db = db
        self._lease = lease
        # The run queue at the door, in the same database (a queued run is stored as it joins).
        self.queue = QueueStore(db, self._run_row)
        # The budget ledger, in the same database (docs/budgets.md).
        self.budget = BudgetStore(db)

    @classmethod
    async def open(cls, url: str, *, lease: LeaseTerms | None = None, busy_timeout_s: float = 5.0) -> RunStore:
        """Connect, create the tables that are missing and add the columns an older database lacks."""
        db = Database.open(url, busy_timeout_s)

        async def schema(session: AsyncSession) -> list[str]:
            if db.dialect == "postgresql":  # replicas starting at once: one creates, the others see it
                await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
            return await (await session.connection()).run_sync(create_or_upgrade)

        try:
            added = await db.write(schema)
        except BaseException:
            await db.dispose()
            raise
        if added:
            log.info("run store: added %s to an older database", ", ".join(added))
        return cls(db, lease or LeaseTerms())

    @property
    def lease(self) -> LeaseTerms:
        return self._lease

    async def close(self) -> None:
        await self._db.dispose()

    def _run_row(self, run: pb.Run, tenant: str) -> RunRow:
        """An accepted run of ``tenant`` as RUNNING, leased to this store's owner."""
        return RunRow(
            id=run.id,
            task=run.task,
            status=run.status,
            swarm_size=run.swarm_size,
            quorum=run.quorum,
            adaptive_start=run.adaptive_start,
            created_at=run.created_at.ToDatetime(tzinfo=dt.UTC),
            finished_at=None,
            final_overall=0.0,
            consensus_reached=0,
            error="",
            document="",
            owner=self._lease.owner,
            lease_expires=self._lease.until(utc_now()),
            tenant=tenant,
        )

    async def create_run(self, run: pb.Run, tenant: str = DEFAULT_TENANT) -> None:
        """Store an accepted run of ``tenant`` as RUNNING, leased to this store's owner."""
        row = self._run_row(run, tenant)

        async def work(session: AsyncSession) -> None:
            await session.merge(row)  # a retry after a commit that did happen finds the row

        await self._db.write(work)

    async def add_candidate(self, run_id: str, candidate: pb.Candidate) -> None:
        row = CandidateRow(run_id=run_id, candidate_id=candidate.id, document=to_json(candidate))

        async def work(session: AsyncSession) -> None:
            await session.merge(row)

        await self._db.write(work)

    async def add_failure(self, run_id: str, failure: pb.InstanceFailure) -> None:
        async def work(session: AsyncSession) -> None:
            session.add(FailureRow(run_id=run_id, document=to_json(failure)))

        await self._db.write(work)

    async def renew_leases(self, run_ids: Sequence[str]) -> int:
        """Extend the leases of the runs this orchestrator drives; returns how many were renewed."""
        return await store_leases.renew_all(self._db, self._lease, run_ids)

    async def reclaim_expired(self, limit: int = 100, spare: Collection[str] = ()) -> list[str]:
        """End FAILED "interrupted" (from their rows) the RUNNING runs whose lease ran out, the
        oldest first, at most ``limit``, except ``spare`` (the runs the caller itself still
        drives); returns their ids."""
        return await store_leases.reclaim_expired(self._db, limit, spare)

    async def model_completion_tokens(self, limit: int = 500) -> dict[str, tuple[float, int]]:
        """Mean completion tokens per model over the newest ``limit`` stored swarm answers, with how
        many answers it is the mean of (the cost estimate's history)."""

        async def work(session: AsyncSession) -> dict[str, tuple[float, int]]:
            docs = await session.scalars(
                select(CandidateRow.document)
                .join(RunRow, RunRow.id == CandidateRow.run_id)
                .order_by(RunRow.created_at.desc())
                .limit(limit)
            )
            sums: dict[str, tuple[int, int]] = {}
            for doc in docs:
                candidate = parse_document(doc, pb.Candidate())
                if candidate.origin != pb.CANDIDATE_ORIGIN_SWARM or candidate.usage.completion_tokens <= 0:
                    continue
                total, count = sums.get(candidate.model, (0, 0))
                sums[candidate.model] = (total + candidate.usage.completion_tokens, count + 1)
            return {model: (total / count, count) for model, (total, count) in sums.items()}

        return await self._db.read(work)

    async def finish_run(self, run: pb.Run, events: list[Event] | None = None) -> bool:
        """Store the final document and every candidate with its final scores and rank, the run's
        audit entries (the gates' hold) and the reputation events its assessment produced.

        Only a run still RUNNING under this store's lease is written; False when it is not (a
        sweep closed it as interrupted after its lease ran out, or it was never stored).
        """

        async def work(session: AsyncSession) -> None:
            claimed = await session.execute(
                update(RunRow)
                .where(RunRow.id == run.id, RunRow.status == pb.RUN_STATUS_RUNNING, RunRow.owner == self._lease.owner)
                .values(
                    status=run.status,
                    finished_at=run.finished_at.ToDatetime(tzinfo=dt.UTC) if run.HasField("finished_at") else None,
                    final_overall=run.final.overall if run.HasField("final") else 0.0,
                    consensus_reached=int(run.consensus.reached),
                    error=run.error,
                    document=run_document(run),
                    lease_expires=None,
                )
            )
            if cast("Any", claimed).rowcount != 1:
                raise _Fenced
            for entry in run.audit:
                session.add(
                    AuditRow(
                        run_id=run.id,
                        actor=entry.actor,
                        action=entry.action,
                        comment=entry.comment,
                        at=entry.time.ToDatetime(tzinfo=dt.UTC),
                    )
                )
            finished = run.finished_at.ToDatetime(tzinfo=dt.UTC) if run.HasField("finished_at") else utc_now()
            session.add_all(event_rows(run.id, events or [], "", finished))
            for candidate in run.candidates:
                await session.merge(CandidateRow(run_id=run.id, candidate_id=candidate.id, document=to_json(candidate)))

        try:
            await self._db.write(work)
        except _Fenced:
            return False
        return True

    async def get_run(self, run_id: str, tenant: str | None = None) -> pb.Run:
        return await self._db.read(lambda session: self._get_run(session, run_id, tenant))

    async def _get_run(self, session: AsyncSession, run_id: str, tenant: str | None) -> pb.Run:
        row = await session.get(RunRow, run_id)
        if row is None or (tenant is not None and row.tenant != tenant):
            raise NotFoundError(f"run {run_id!r} does not exist; `swarm runs list` shows stored runs")
        if row.document:
            run = parse_document(row.document, pb.Run())
            await self._join_people(session, run)
            return run
        candidates = await session.scalars(select(CandidateRow).where(CandidateRow.run_id == run_id))
        failures = await session.scalars(select(FailureRow).where(FailureRow.run_id == run_id).order_by(FailureRow.id))
        return run_from_rows(row, list(candidates), list(failures))

    @staticmethod
    async def _join_people(session: AsyncSession, run: pb.Run) -> None:
        """Add the approval trail and the feedback, oldest first, to a run read from its document."""
        audit = await session.scalars(select(AuditRow).where(AuditRow.run_id == run.id).order_by(AuditRow.id))
        run.audit.extend(audit_entry(row) for row in audit)
        feedback = await session.scalars(
            select(FeedbackRow).where(FeedbackRow.run_id == run.id).order_by(FeedbackRow.at, FeedbackRow.author)
        )
        run.feedback.extend(feedback_message(row) for row in feedback)

    async def decide(
        self,
        run_id: str,
        actor: str,
        approve: bool,
        comment: str,
        events: Callable[[pb.Run], list[Event]],
        tenant: str | None = None,
    ) -> pb.Run:
        """Approve or reject a run that waits for approval: status, audit entry and reputation
        events in one transaction; ``events`` derives the reputation events from the stored run.

        Raises NotFoundError for an unknown run (or one of another tenant) and
        FailedPreconditionError for one that does not wait (never approved, or already decided:
        the message says by whom).
        """
        at = utc_now()
        await self._db.write(
            lambda session: store_approvals.decide(session, run_id, actor, approve, comment, events, at, tenant)
        )
        return await self.get_run(run_id, tenant)

    async def list_pending(
        self, page_size: int, page_token: str, tenant: str | None = None
    ) -> tuple[list[tuple[pb.RunSummary, common_pb2.GateDecision]], str]:
        """Runs waiting for approval, oldest first (the longest wait is the first to see)."""
        query = (
            select(RunRow)
            .where(RunRow.status == pb.RUN_STATUS_NEEDS_APPROVAL)
            .order_by(RunRow.created_at, RunRow.id)
            .limit(page_size + 1)
        )
        if tenant is not None:
            query = query.where(RunRow.tenant == tenant)
        if page_token:
            created, run_id = decode_token(page_token)
            query = query.where((RunRow.created_at > created) | ((RunRow.created_at == created) & (RunRow.id > run_id)))
        rows = await self._db.read(lambda session: _all(session, query))
        pending = [(run_summary(row), parse_document(row.document, pb.Run()).gate) for row in rows[:page_size]]
        next_token = ""
        if len(rows) > page_size:
            last = rows[page_size - 1]
            next_token = encode_token(as_utc(last.created_at), last.id)
        return pending, next_token

    async def submit_feedback(
        self, run_id: str, feedback: pb.Feedback, events: Callable[[pb.Run], list[Event]], tenant: str | None = None
    ) -> tuple[pb.Feedback, list[Event], Snapshot]:
        """Store (or replace) one user's feedback on a finished run with its reputation events.

        Returns the stored feedback, the events and the reputation snapshot from just before
        (for "how it moved", in ``tenant``). ``events`` derives the events from the run and may raise to refuse.
        """
        at = utc_now()
        origin = f"feedback:{feedback.user}"
        run = await self.get_run(run_id, tenant)
        if run.status == pb.RUN_STATUS_RUNNING:
            raise FailedPreconditionError(f"run {run_id} is still running; give feedback once it has finished")
        if not run.HasField("final"):
            raise FailedPreconditionError(
                f"run {run_id} is {status_name(run.status)} without an answer; there is nothing to give feedback on"
            )
        new_events = events(run)

        async def work(session: AsyncSession) -> Snapshot:
            before = await store_reports.tally(session, tenant, None)
            await session.execute(
                delete(FeedbackRow).where(FeedbackRow.run_id == run_id, FeedbackRow.author == feedback.user)
            )
            await session.execute(
                delete(ReputationEventRow).where(
                    ReputationEventRow.run_id == run_id, ReputationEventRow.origin == origin
                )
            )
            session.add(
                FeedbackRow(
                    run_id=run_id,
                    author=feedback.user,
                    rating=feedback.rating,
                    preferred_candidate_id=feedback.preferred_candidate_id,
                    comment=feedback.comment,
                    at=at,
                )
            )
            session.add_all(event_rows(run_id, new_events, origin, at))
            return before

        before = await self._db.write(work)
        stored = pb.Feedback()
        stored.CopyFrom(feedback)
        stored.time.FromDatetime(at)
        return stored, new_events, before

    async def reputation(self, tenant: str | None, before: dt.datetime | None = None) -> dict[Key, Tally]:
        """Every instance's and model's summed events in ``tenant``, optionally only those before a time."""
        return await self._db.read(lambda session: store_reports.tally(session, tenant, before))

    async def runs_between(
        self, since: dt.datetime | None, until: dt.datetime | None, tenant: str | None = None
    ) -> list[pb.Run]:
        """Every run of ``tenant`` created in [since, until), oldest first, with its approvals and feedback."""
        return await self._db.read(lambda session: store_reports.runs_between(session, since, until, tenant))

    async def list_runs(
        self, page_size: int, page_token: str, tenant: str | None = None
    ) -> tuple[list[pb.RunSummary], str]:
        query = select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id.desc()).limit(page_size + 1)
        if tenant is not None:
            query = query.where(RunRow.tenant == tenant)
        if page_token:
            created, run_id = decode_token(page_token)
            query = query.where((RunRow.created_at < created) | ((RunRow.created_at == created) & (RunRow.id < run_id)))
        rows = await self._db.read(lambda session: _all(session, query))
        summaries = [run_summary(row) for row in rows[:page_size]]
        next_token = ""
        if len(rows) > page_size:
            last = rows[page_size - 1]
            next_token = encode_token(as_utc(last.created_at), last.id)
        return summaries, next_token


async def _all(session: AsyncSession, query: Select[RunRow]) -> list[RunRow]:
    return list(await session.scalars(query))
