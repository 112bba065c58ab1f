"""What the reports read from the store, always within one tenant: the reputation tallies (events
of the tenant's runs) and the runs created in a window with their approvals and feedback.

Reputation events carry no tenant of their own: each belongs to a run, and the run's tenant is
the events' (a join, so an event can never drift from its run's tenant).
"""

from __future__ import annotations

import datetime as dt
from typing import cast

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from swarm.v1 import orchestrator_pb2 as pb

from .reputation import INSTANCE, MODEL, Key, Tally
from .store_rows import (
    AuditRow,
    FeedbackRow,
    ReputationEventRow,
    RunRow,
    as_utc,
    audit_entry,
    feedback_message,
    parse_document,
)


async def tally(session: AsyncSession, tenant: str | None, before: dt.datetime | None) -> dict[Key, Tally]:
    """Every instance's and model's summed events in ``tenant`` (None: all), optionally only those
    before a time; an instance's tally also names the models its events are about
    (``reputation.stable``)."""
    query = select(
        ReputationEventRow.instance,
        ReputationEventRow.model,
        func.sum(ReputationEventRow.successes),
        func.sum(ReputationEventRow.failures),
        func.count(ReputationEventRow.id),
    ).group_by(ReputationEventRow.instance, ReputationEventRow.model)
    if tenant is not None:
        query = query.join(RunRow, RunRow.id == ReputationEventRow.run_id).where(RunRow.tenant == tenant)
    if before is not None:
        query = query.where(ReputationEventRow.at < before)
    tallies: dict[Key, Tally] = {}
    for instance, model, successes, failures, count in await session.execute(query):
        part = Tally(float(successes or 0.0), float(failures or 0.0), int(count))
        if instance:
            _add(tallies, (INSTANCE, instance), part, model)
        if model:
            _add(tallies, (MODEL, model), part, "")
    return tallies


def _add(tallies: dict[Key, Tally], key: Key, part: Tally, model: str) -> None:
    now = tallies.get(key, Tally())
    models = tuple(sorted({*now.models, model})) if model else now.models
    tallies[key] = Tally(
        now.successes + part.successes, now.failures + part.failures, now.observations + part.observations, models
    )


async def runs_between(
    session: AsyncSession, since: dt.datetime | None, until: dt.datetime | None, tenant: str | None
) -> list[pb.Run]:
    """Every run of ``tenant`` (None: all) created in [since, until), oldest first, with its
    approvals and feedback."""
    query = select(RunRow).order_by(RunRow.created_at, RunRow.id)
    if tenant is not None:
        query = query.where(RunRow.tenant == tenant)
    if since is not None:
        query = query.where(RunRow.created_at >= since)
    if until is not None:
        query = query.where(RunRow.created_at < until)
    rows = list(await session.scalars(query))
    audit: dict[str, list[pb.AuditEntry]] = {}
    feedback: dict[str, list[pb.Feedback]] = {}
    ids = [row.id for row in rows]
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        for entry in await session.scalars(select(AuditRow).where(AuditRow.run_id.in_(chunk)).order_by(AuditRow.id)):
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
