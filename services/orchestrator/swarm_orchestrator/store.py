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
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, cast

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarmlib import FailedPreconditionError, NotFoundError

from .reputation import INSTANCE, MODEL, Event, Key, Snapshot, Tally
from .store_rows import (
    AuditRow,
    Base,
    CandidateRow,
    FailureRow,
    FeedbackRow,
    ReputationEventRow,
    RunRow,
    as_utc,
    audit_entry,
    decode_token,
    encode_token,
    event_rows,
    feedback_message,
    parse_document,
    run_document,
    run_summary,
    status_name,
    to_json,
    utc_now,
)


class RunStore:
    """The orchestrator's only door to the database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(cls, url: str) -> RunStore:
        """Connect and create the tables if they are missing (SQLite parent directory too)."""
        if url.startswith("sqlite") and ":///" in url:
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, pool_pre_ping=True)
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
        return cls(engine)

    async def close(self) -> None:
        await self._engine.dispose()

    async def create_run(self, run: pb.Run) -> None:
        async with self._sessions.begin() as session:
            session.add(
                RunRow(
                    id=run.id,
                    task=run.task,
                    status=run.status,
                    swarm_size=run.swarm_size,
                    quorum=run.quorum,
                    created_at=run.created_at.ToDatetime(tzinfo=dt.UTC),
                    finished_at=None,
                    final_overall=0.0,
                    consensus_reached=0,
                    error="",
                    document="",
                )
            )

    async def add_candidate(self, run_id: str, candidate: pb.Candidate) -> None:
        async with self._sessions.begin() as session:
            await session.merge(CandidateRow(run_id=run_id, candidate_id=candidate.id, document=to_json(candidate)))

    async def add_failure(self, run_id: str, failure: pb.InstanceFailure) -> None:
        async with self._sessions.begin() as session:
            session.add(FailureRow(run_id=run_id, document=to_json(failure)))

    async def finish_run(self, run: pb.Run, events: list[Event] | None = None) -> None:
        """Store the final document and every candidate with its final scores and rank, the run's
        audit entries (the gates' hold) and the reputation events its assessment produced."""
        async with self._sessions.begin() as session:
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
            await session.execute(
                update(RunRow)
                .where(RunRow.id == run.id)
                .values(
                    status=run.status,
                    finished_at=run.finished_at.ToDatetime(tzinfo=dt.UTC) if run.HasField("finished_at") else None,
                    final_overall=run.final.overall if run.HasField("final") else 0.0,
                    consensus_reached=int(run.consensus.reached),
                    error=run.error,
                    document=run_document(run),
                )
            )

    async def get_run(self, run_id: str) -> pb.Run:
        async with self._sessions() as session:
            row = await session.get(RunRow, run_id)
            if row is None:
                raise NotFoundError(f"run {run_id!r} does not exist; `swarm runs list` shows stored runs")
            if row.document:
                run = parse_document(row.document, pb.Run())
                await self._join_people(session, run)
                return run
            run = pb.Run(
                id=row.id,
                task=row.task,
                status=cast("pb.RunStatus", row.status),
                swarm_size=row.swarm_size,
                quorum=row.quorum,
                error=row.error,
            )
            run.created_at.FromDatetime(as_utc(row.created_at))
            candidates = await session.scalars(
                select(CandidateRow).where(CandidateRow.run_id == run_id).order_by(CandidateRow.candidate_id)
            )
            for candidate in candidates:
                run.candidates.append(parse_document(candidate.document, pb.Candidate()))
            failures = await session.scalars(
                select(FailureRow).where(FailureRow.run_id == run_id).order_by(FailureRow.id)
            )
            for failure in failures:
                run.failures.append(parse_document(failure.document, pb.InstanceFailure()))
            return run

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
        self, run_id: str, actor: str, approve: bool, comment: str, events: Callable[[pb.Run], list[Event]]
    ) -> pb.Run:
        """Approve or reject a run that waits for approval: status, audit entry and reputation
        events in one transaction; ``events`` derives the reputation events from the stored run.

        Raises NotFoundError for an unknown run and FailedPreconditionError for one that does not
        wait (never approved, or already decided: the message says by whom).
        """
        new_status = pb.RUN_STATUS_SUCCEEDED if approve else pb.RUN_STATUS_REJECTED
        verb = "approve" if approve else "reject"
        at = utc_now()
        async with self._sessions.begin() as session:
            claimed = await session.execute(
                update(RunRow)
                .where(RunRow.id == run_id, RunRow.status == pb.RUN_STATUS_NEEDS_APPROVAL)
                .values(status=new_status)
            )
            if cast("Any", claimed).rowcount != 1:
                await self._refuse_decision(session, run_id, verb)
            row = await session.get(RunRow, run_id)
            assert row is not None  # the update above matched it
            run = parse_document(row.document, pb.Run())
            run.status = new_status
            if not approve:
                run.error = f"rejected by {actor}" + (f": {comment}" if comment else "")
            row.document = run_document(run)
            row.error = run.error
            action = pb.AUDIT_ACTION_APPROVED if approve else pb.AUDIT_ACTION_REJECTED
            session.add(AuditRow(run_id=run_id, actor=actor, action=action, comment=comment, at=at))
            session.add_all(event_rows(run_id, events(run), f"approval:{actor}", at))
        return await self.get_run(run_id)

    async def _refuse_decision(self, session: AsyncSession, run_id: str, verb: str) -> NoReturn:
        row = await session.get(RunRow, run_id)
        if row is None:
            raise NotFoundError(f"run {run_id!r} does not exist; `swarm approvals` lists the runs waiting for approval")
        last = await session.scalar(
            select(AuditRow)
            .where(AuditRow.run_id == run_id, AuditRow.action != pb.AUDIT_ACTION_HELD)
            .order_by(AuditRow.id.desc())
            .limit(1)
        )
        history = ""
        if last is not None:
            done = "approved" if last.action == pb.AUDIT_ACTION_APPROVED else "rejected"
            history = f" ({done} by {last.actor} at {as_utc(last.at).isoformat(timespec='seconds')})"
        raise FailedPreconditionError(
            f"run {run_id} is {status_name(row.status)}{history}, not waiting for approval: only runs in "
            f"needs_approval can be approved or rejected, so there is nothing to {verb}; "
            "`swarm approvals` lists the runs waiting"
        )

    async def list_pending(
        self, page_size: int, page_token: str
    ) -> tuple[list[tuple[pb.RunSummary, common_pb2.GateDecision]], str]:
        """Runs waiting for approval, oldest first (the longest wait is the first to see)."""
        query = (
            select(RunRow)
            .where(RunRow.status == pb.RUN_STATUS_NEEDS_APPROVAL)
            .order_by(RunRow.created_at, RunRow.id)
            .limit(page_size + 1)
        )
        if page_token:
            created, run_id = decode_token(page_token)
            query = query.where((RunRow.created_at > created) | ((RunRow.created_at == created) & (RunRow.id > run_id)))
        async with self._sessions() as session:
            rows = list(await session.scalars(query))
        pending = [(run_summary(row), parse_document(row.document, pb.Run()).gate) for row in rows[:page_size]]
        next_token = ""
        if len(rows) > page_size:
            last = rows[page_size - 1]
            next_token = encode_token(as_utc(last.created_at), last.id)
        return pending, next_token

    async def submit_feedback(
        self, run_id: str, feedback: pb.Feedback, events: Callable[[pb.Run], list[Event]]
    ) -> tuple[pb.Feedback, list[Event], Snapshot]:
        """Store (or replace) one user's feedback on a finished run with its reputation events.

        Returns the stored feedback, the events and the reputation snapshot from just before
        (for "how it moved"). ``events`` derives the events from the run and may raise to refuse.
        """
        at = utc_now()
        origin = f"feedback:{feedback.user}"
        run = await self.get_run(run_id)
        if run.status == pb.RUN_STATUS_RUNNING:
            raise FailedPreconditionError(f"run {run_id} is still running; give feedback once it has finished")
        if not run.HasField("final"):
            raise FailedPreconditionError(
                f"run {run_id} is {status_name(run.status)} without an answer; there is nothing to give feedback on"
            )
        new_events = events(run)
        async with self._sessions.begin() as session:
            before = await self._tally(session, None)
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
        stored = pb.Feedback()
        stored.CopyFrom(feedback)
        stored.time.FromDatetime(at)
        return stored, new_events, before

    async def reputation(self, before: dt.datetime | None = None) -> dict[Key, Tally]:
        """Every instance's and model's summed events, optionally only those before a time."""
        async with self._sessions() as session:
            return await self._tally(session, before)

    @staticmethod
    async def _tally(session: AsyncSession, before: dt.datetime | None) -> dict[Key, Tally]:
        tallies: dict[Key, Tally] = {}
        for scope, column in ((INSTANCE, ReputationEventRow.instance), (MODEL, ReputationEventRow.model)):
            query = select(
                column,
                func.sum(ReputationEventRow.successes),
                func.sum(ReputationEventRow.failures),
                func.count(ReputationEventRow.id),
            ).group_by(column)
            if before is not None:
                query = query.where(ReputationEventRow.at < before)
            for name, successes, failures, count in await session.execute(query):
                if name:
                    tallies[(scope, name)] = Tally(float(successes or 0.0), float(failures or 0.0), int(count))
        return tallies

    async def runs_between(self, since: dt.datetime | None, until: dt.datetime | None) -> list[pb.Run]:
        """Every run created in [since, until), oldest first, with its approvals and feedback."""
        query = select(RunRow).order_by(RunRow.created_at, RunRow.id)
        if since is not None:
            query = query.where(RunRow.created_at >= since)
        if until is not None:
            query = query.where(RunRow.created_at < until)
        async with self._sessions() as session:
            rows = list(await session.scalars(query))
            audit: dict[str, list[pb.AuditEntry]] = {}
            feedback: dict[str, list[pb.Feedback]] = {}
            ids = [row.id for row in rows]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                for entry in await session.scalars(
                    select(AuditRow).where(AuditRow.run_id.in_(chunk)).order_by(AuditRow.id)
                ):
                    audit.setdefault(entry.run_id, []).append(audit_entry(entry))
                for item in await session.scalars(
                    select(FeedbackRow).where(FeedbackRow.run_id.in_(chunk)).order_by(FeedbackRow.at)
                ):
                    feedback.setdefault(item.run_id, []).append(feedback_message(item))
        runs = []
        for row in rows:
            if row.document:
                run = parse_document(row.document, pb.Run())
            else:
                run = pb.Run(id=row.id, task=row.task, status=cast("pb.RunStatus", row.status))
                run.created_at.FromDatetime(as_utc(row.created_at))
            run.audit.extend(audit.get(row.id, []))
            run.feedback.extend(feedback.get(row.id, []))
            runs.append(run)
        return runs

    async def list_runs(self, page_size: int, page_token: str) -> tuple[list[pb.RunSummary], str]:
        query = select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id.desc()).limit(page_size + 1)
        if page_token:
            created, run_id = decode_token(page_token)
            query = query.where((RunRow.created_at < created) | ((RunRow.created_at == created) & (RunRow.id < run_id)))
        async with self._sessions() as session:
            rows = list(await session.scalars(query))
        summaries = [run_summary(row) for row in rows[:page_size]]
        next_token = ""
        if len(rows) > page_size:
            last = rows[page_size - 1]
            next_token = encode_token(as_utc(last.created_at), last.id)
        return summaries, next_token
