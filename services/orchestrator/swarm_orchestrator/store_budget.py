"""The budget ledger: one row per run that reserved money, shared by every replica on the database.

A run reserves its upper bound before anything is called, in one write transaction that first
takes the ledger's lock (PostgreSQL: an advisory transaction lock; SQLite: the store's one writer),
sums what its caller and tenant have spent and reserved this UTC day and month, and inserts its row
only if the bound fits (``Decide`` says so, or shrinks the run, or raises). Two replicas can never
both take the last dollar. The run's end settles the row to what it cost; a row whose run ended
without settling, or whose orchestrator died (its lease ran out), is settled by the lease sweep or
the next reservation to what the run stored; a row whose run was never stored is released.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import DateTime, Float, Integer, String, case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from swarm.v1 import orchestrator_pb2 as pb

from .store_db import Database
from .store_rows import Base, CandidateRow, FailureRow, RunRow, as_utc, parse_document, utc_now

_BUDGET_LOCK = 0x5357_4247  # the PostgreSQL advisory lock around every reservation
# A reservation whose run row never appeared (its orchestrator died between the two) is released
# after this long; the run row is written right after the reservation.
UNSTORED_GRACE_S = 120.0


class BudgetRow(Base):
    __tablename__ = "budget_ledger"

    run_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    caller: Mapped[str] = mapped_column(String(300), index=True)  # tenant/user
    tenant: Mapped[str] = mapped_column(String(128), index=True)
    day: Mapped[str] = mapped_column(String(10), index=True)  # UTC, 2026-12-01
    month: Mapped[str] = mapped_column(String(7))  # UTC, 2026-12
    reserved_usd: Mapped[float] = mapped_column(Float)
    spent_usd: Mapped[float] = mapped_column(Float, default=0.0)
    settled: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Spend:
    """Settled cost and open reservations of one scope in one period."""

    spent_usd: float = 0.0
    reserved_usd: float = 0.0

    @property
    def total(self) -> float:
        return self.spent_usd + self.reserved_usd


@dataclass(frozen=True)
class Ledger:
    """What a caller and its tenant have spent and reserved, today and this month (UTC)."""

    caller_day: Spend
    caller_month: Spend
    tenant_day: Spend
    tenant_month: Spend


# Given the ledger, the amount to reserve (possibly for a shrunk run); raising refuses the run.
Decide = Callable[[Ledger], float]


def periods(now: dt.datetime) -> tuple[str, str]:
    return now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")


class BudgetStore:
    """The ledger's transactions; a reservation takes the ledger's lock first (module docstring)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def reserve(self, run_id: str, caller: str, tenant: str, decide: Decide) -> float:
        """Reserve what ``decide`` returns for ``run_id`` if it does not raise; returns the amount."""

        async def work(session: AsyncSession) -> float:
            await _lock(session)
            now = utc_now()
            await _settle_stale(session, now)
            amount = decide(await _ledger(session, caller, tenant, now))
            day, month = periods(now)
            session.add(
                BudgetRow(
                    run_id=run_id,
                    caller=caller,
                    tenant=tenant,
                    day=day,
                    month=month,
                    reserved_usd=amount,
                    spent_usd=0.0,
                    settled=0,
                    created_at=now,
                )
            )
            return amount

        return await self._db.write(work)

    async def settle(self, run_id: str, cost_usd: float) -> None:
        """The run ended: its row counts what it cost instead of what it reserved."""

        async def work(session: AsyncSession) -> None:
            await session.execute(
                update(BudgetRow).where(BudgetRow.run_id == run_id).values(spent_usd=cost_usd, settled=1)
            )

        await self._db.write(work)

    async def release_stale(self) -> int:
        """Settle the rows of runs that ended unsettled or whose orchestrator died (the lease sweep)."""

        async def work(session: AsyncSession) -> int:
            await _lock(session)
            return await _settle_stale(session, utc_now())

        return await self._db.write(work)

    async def ledger(self, caller: str, tenant: str) -> Ledger:
        return await self._db.read(lambda session: _ledger(session, caller, tenant, utc_now()))

    async def settled_total(self) -> float:
        """Every settled cost in the ledger (tests and the bench compare it with the budget)."""

        async def work(session: AsyncSession) -> float:
            total = await session.scalar(select(func.coalesce(func.sum(BudgetRow.spent_usd), 0.0)))
            return float(total or 0.0)

        return await self._db.read(work)

    async def callers(self) -> list[tuple[str, str]]:
        """(caller, tenant) of every row this month: whose budgets a gauge reports."""

        async def work(session: AsyncSession) -> list[tuple[str, str]]:
            _, month = periods(utc_now())
            rows = await session.execute(
                select(BudgetRow.caller, BudgetRow.tenant).where(BudgetRow.month == month).distinct()
            )
            return [(str(c), str(t)) for c, t in rows]

        return await self._db.read(work)


async def _lock(session: AsyncSession) -> None:
    if (await session.connection()).dialect.name == "postgresql":
        await session.execute(select(func.pg_advisory_xact_lock(_BUDGET_LOCK)))


async def _ledger(session: AsyncSession, caller: str, tenant: str, now: dt.datetime) -> Ledger:
    day, month = periods(now)

    async def spend(*where: object) -> Spend:
        spent = func.coalesce(func.sum(case((BudgetRow.settled == 1, BudgetRow.spent_usd), else_=0.0)), 0.0)
        held = func.coalesce(func.sum(case((BudgetRow.settled == 0, BudgetRow.reserved_usd), else_=0.0)), 0.0)
        row = (await session.execute(select(spent, held).where(*where))).one()  # type: ignore[arg-type]
        return Spend(float(row[0]), float(row[1]))

    return Ledger(
        caller_day=await spend(BudgetRow.caller == caller, BudgetRow.day == day),
        caller_month=await spend(BudgetRow.caller == caller, BudgetRow.month == month),
        tenant_day=await spend(BudgetRow.tenant == tenant, BudgetRow.day == day),
        tenant_month=await spend(BudgetRow.tenant == tenant, BudgetRow.month == month),
    )


async def _settle_stale(session: AsyncSession, now: dt.datetime) -> int:
    """Settle every open row whose run is no longer RUNNING under a live lease, to what the run
    stored; release (at 0) the rows whose run was never stored, after ``UNSTORED_GRACE_S``."""
    rows = await session.execute(
        select(BudgetRow.run_id, BudgetRow.created_at, RunRow.status, RunRow.lease_expires, RunRow.document)
        .join(RunRow, RunRow.id == BudgetRow.run_id, isouter=True)
        .where(BudgetRow.settled == 0)
    )
    settled = 0
    for run_id, created, status, lease, document in rows:
        if status is None:
            if (now - as_utc(created)).total_seconds() < UNSTORED_GRACE_S:
                continue
            cost = 0.0
        elif status == pb.RUN_STATUS_RUNNING and lease is not None and as_utc(lease) >= now:
            continue
        else:
            cost = await _stored_cost(session, run_id, document or "")
        await session.execute(update(BudgetRow).where(BudgetRow.run_id == run_id).values(spent_usd=cost, settled=1))
        settled += 1
    return settled


async def _stored_cost(session: AsyncSession, run_id: str, document: str) -> float:
    """What a run that ended without settling spent, as far as the store knows: its document's
    usage when it ended itself, else the sum of the answers and failures it stored."""
    if document:
        run = parse_document(document, pb.Run())
        if run.usage.cost_usd > 0:
            return run.usage.cost_usd
    total = 0.0
    for doc in await session.scalars(select(CandidateRow.document).where(CandidateRow.run_id == run_id)):
        total += parse_document(doc, pb.Candidate()).usage.cost_usd
    for doc in await session.scalars(select(FailureRow.document).where(FailureRow.run_id == run_id)):
        total += parse_document(doc, pb.InstanceFailure()).usage.cost_usd
    return total
