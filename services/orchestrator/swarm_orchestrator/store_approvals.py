"""Approving or rejecting a held run, in the store: one conditional update, so of two approvers
acting at once exactly one succeeds (on SQLite and PostgreSQL), and the other learns who did."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, NoReturn, cast

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from swarm.v1 import orchestrator_pb2 as pb
from swarmlib import FailedPreconditionError, NotFoundError

from .reputation import Event
from .store_rows import AuditRow, RunRow, as_utc, event_rows, parse_document, run_document, status_name


async def decide(
    session: AsyncSession,
    run_id: str,
    actor: str,
    approve: bool,
    comment: str,
    events: Callable[[pb.Run], list[Event]],
    at: dt.datetime,
    tenant: str | None = None,
) -> None:
    """Status, audit entry and reputation events of the decision, in ``session``'s transaction;
    a run of another tenant than ``tenant`` (None: any) is refused as one that does not exist."""
    new_status = pb.RUN_STATUS_SUCCEEDED if approve else pb.RUN_STATUS_REJECTED
    claim = update(RunRow).where(RunRow.id == run_id, RunRow.status == pb.RUN_STATUS_NEEDS_APPROVAL)
    if tenant is not None:
        claim = claim.where(RunRow.tenant == tenant)
    claimed = await session.execute(claim.values(status=new_status))
    if cast("Any", claimed).rowcount != 1:
        await _refuse(session, run_id, "approve" if approve else "reject", tenant)
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


async def _refuse(session: AsyncSession, run_id: str, verb: str, tenant: str | None) -> NoReturn:
    row = await session.get(RunRow, run_id)
    if row is None or (tenant is not None and row.tenant != tenant):
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
