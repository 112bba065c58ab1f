"""Run leases in the store: a RUNNING run belongs to the orchestrator that drives it for as long as
that orchestrator renews its lease, and a run whose lease ran out is ended FAILED "interrupted"
from its rows, with every answer and failure that had been stored.

The heartbeat and the sweep that use these: ``lease.Leases``; the rules and the bounds they give:
docs/reliability.md ("Restart without loss").
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from swarm.v1 import orchestrator_pb2 as pb

from .store_db import Database
from .store_rows import CandidateRow, FailureRow, RunRow, as_utc, run_document, run_from_rows, utc_now


def new_owner() -> str:
    """``host:pid:random``: unique per process, and it says where a run was driven."""
    return f"{socket.gethostname()[:100]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaseTerms:
    """Who this store writes runs for, and how long a lease lasts unless renewed."""

    owner: str = field(default_factory=new_owner)
    ttl_s: float = 30.0

    def until(self, now: dt.datetime) -> dt.datetime:
        return now + dt.timedelta(seconds=self.ttl_s)


def expired(now: dt.datetime) -> ColumnElement[bool]:
    """RUNNING with a lease that ran out, or with none (a row written before leases existed)."""
    return (RunRow.status == pb.RUN_STATUS_RUNNING) & (RunRow.lease_expires.is_(None) | (RunRow.lease_expires < now))


async def renew_all(db: Database, terms: LeaseTerms, run_ids: Sequence[str]) -> int:
    """Extend the leases of the RUNNING runs among ``run_ids`` that ``terms.owner`` holds, in one
    transaction; returns how many were renewed."""
    if not run_ids:
        return 0
    ids = list(run_ids)
    return await db.write(lambda session: renew(session, terms, ids, utc_now()))


async def reclaim_expired(db: Database, limit: int, spare: Collection[str] = ()) -> list[str]:
    """End FAILED "interrupted" the RUNNING runs whose lease ran out, oldest first, at most
    ``limit``, each in a transaction of its own, except ``spare``; returns the ids this call ended."""
    now = utc_now()
    reclaimed = []
    for run_id in await db.read(lambda session: expired_ids(session, now, limit, spare)):

        async def work(session: AsyncSession, run_id: str = run_id) -> bool:
            return await reclaim(session, run_id, now)

        if await db.write(work):
            reclaimed.append(run_id)
    return reclaimed


async def renew(session: AsyncSession, terms: LeaseTerms, run_ids: Sequence[str], now: dt.datetime) -> int:
    """Extend the leases of the RUNNING runs among ``run_ids`` that ``terms.owner`` holds."""
    renewed = 0
    for start in range(0, len(run_ids), 500):
        result = await session.execute(
            update(RunRow)
            .where(
                RunRow.id.in_(run_ids[start : start + 500]),
                RunRow.owner == terms.owner,
                RunRow.status == pb.RUN_STATUS_RUNNING,
            )
            .values(lease_expires=terms.until(now))
        )
        renewed += int(cast("Any", result).rowcount)
    return renewed


async def expired_ids(session: AsyncSession, now: dt.datetime, limit: int, spare: Collection[str] = ()) -> list[str]:
    query = select(RunRow.id).where(expired(now))
    if spare:
        query = query.where(RunRow.id.not_in(list(spare)))
    rows = await session.scalars(query.order_by(RunRow.created_at).limit(limit))
    return list(rows)


async def reclaim(session: AsyncSession, run_id: str, now: dt.datetime) -> bool:
    """End ``run_id`` FAILED "interrupted" if its lease is still out; False when its owner renewed
    it, or another replica ended it, first. The condition is in the UPDATE itself, so of replicas
    sweeping at once, and of a sweep and a late renewal, exactly one wins."""
    claimed = await session.execute(
        update(RunRow).where(RunRow.id == run_id, expired(now)).values(status=pb.RUN_STATUS_FAILED, finished_at=now)
    )
    if cast("Any", claimed).rowcount != 1:
        return False
    row = await session.get(RunRow, run_id)
    assert row is not None  # the update above matched it
    candidates = await session.scalars(select(CandidateRow).where(CandidateRow.run_id == run_id))
    failures = await session.scalars(select(FailureRow).where(FailureRow.run_id == run_id).order_by(FailureRow.id))
    run = run_from_rows(row, list(candidates), list(failures))
    run.status = pb.RUN_STATUS_FAILED
    run.error = interrupted_error(row.owner, row.lease_expires, len(run.candidates))
    run.finished_at.FromDatetime(now)
    row.error = run.error
    row.document = run_document(run)
    return True


def interrupted_error(owner: str, lease_expires: dt.datetime | None, answers: int) -> str:
    kept = f"the {answers} answer(s) and the failures that had arrived are kept"
    if lease_expires is None:
        return (
            "run interrupted: it was started by an orchestrator without run leases and never finished; "
            f"{kept}; send the task again for an answer"
        )
    until = as_utc(lease_expires).isoformat(timespec="seconds")
    return (
        f"run interrupted: the orchestrator driving it ({owner}) stopped renewing its lease (it ran out at "
        f"{until}): it stopped, or could not reach the store; {kept}; send the task again for an answer"
    )
