"""The run queue's table: one row per run that waits for capacity or holds it, shared by every
replica on the same database, so that no replica starts a run the instances have no room for.

Every change happens in one write transaction that first takes the queue's lock (PostgreSQL: an
advisory transaction lock; SQLite: the store's one writer), reads the whole queue and decides with
``admission.plan``; two replicas can never both hand out the last slot. A row counts only while
its run is RUNNING under a live lease: a run that ended, or whose orchestrator died, frees its
slots at the next decision, and its row is deleted then.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import DateTime, Integer, String, Text, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from swarm.v1 import orchestrator_pb2 as pb
from swarmlib import ResourceExhaustedError

from .admission import Capacity, Holding, Plan, Waiting, next_turn, plan
from .store_db import Database
from .store_rows import Base, RunRow, as_utc, utc_now

_QUEUE_LOCK = 0x5357_5155  # the PostgreSQL advisory lock around every decision of the queue
WAITING = 0
ACTIVE = 1


class QueueRow(Base):
    __tablename__ = "run_queue"

    run_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    caller: Mapped[str] = mapped_column(String(300))
    size: Mapped[int] = mapped_column(Integer)
    allowed: Mapped[str] = mapped_column(Text)  # JSON list of instance names
    state: Mapped[int] = mapped_column(Integer)  # WAITING or ACTIVE
    turn: Mapped[int] = mapped_column(Integer, default=0)  # admission.next_turn
    slots: Mapped[str] = mapped_column(Text, default="[]")  # JSON list: the instance of each held slot
    enqueued_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass(frozen=True)
class QueueState:
    """The queue after a decision, across every replica."""

    started: dict[str, tuple[str, ...]]  # every ACTIVE run and its slots (answers first, then writers)
    sizes: dict[str, int]  # every ACTIVE run's answer slots
    positions: dict[str, int]  # every WAITING run's place, 1 first
    enqueued_at: dict[str, dt.datetime]  # every WAITING run's arrival
    newly_started: int  # answer slots of the runs this decision started

    @property
    def depth(self) -> int:
        return len(self.positions)

    def in_use(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for slots in self.started.values():
            for name in slots:
                counts[name] = counts.get(name, 0) + 1
        return counts


# How a decision proposes a run's slots: given the run and the answer slots started before it.
Proposer = Callable[[Waiting, int], tuple[str, ...]]


@dataclass(frozen=True)
class QueueRoom:
    """What a decision needs from the replica making it: the capacity, how many may wait, and
    its pool's proposal of each run's slots."""

    capacity: Capacity
    max_waiting: int
    propose: Proposer


class QueueStore:
    """The queue's transactions; each takes the queue's lock first (module docstring)."""

    def __init__(self, db: Database, run_row: Callable[[pb.Run, str], RunRow]) -> None:
        self._db = db
        self._run_row = run_row

    async def enqueue(self, run: pb.Run, tenant: str, entry: Waiting, room: QueueRoom) -> QueueState:
        """Store an accepted run and queue it, in one transaction, then start what fits; a run
        that would wait behind ``room.max_waiting`` others is refused (``ResourceExhaustedError``)
        and nothing is stored."""

        async def work(session: AsyncSession) -> QueueState:
            await lock(session)
            now = utc_now()
            rows = await live_rows(session, now)
            await session.merge(self._run_row(run, tenant))  # a retry after a commit that did happen finds it
            rows.append(await session.merge(new_row(entry, rows, now)))
            await session.flush()
            state = await decide(session, rows, room.capacity, room.propose, now)
            if entry.run_id in state.positions and state.depth > room.max_waiting:
                # Raising rolls the whole transaction back: the run was never stored.
                raise ResourceExhaustedError(
                    f"the run queue is full: {state.depth - 1} runs wait for capacity "
                    f"(SWARM_QUEUE_SIZE={room.max_waiting}); nothing was started or stored: send the task again later"
                )
            return state

        return await self._db.write(work)

    async def decide(self, room: QueueRoom) -> QueueState:
        """Start the waiting runs that fit now (any replica's); the queue as it then is."""

        async def work(session: AsyncSession) -> QueueState:
            await lock(session)
            now = utc_now()
            return await decide(session, await live_rows(session, now), room.capacity, room.propose, now)

        return await self._db.write(work)

    async def withdraw(self, run_id: str) -> bool:
        """Take a waiting run out of the queue; False when it started first."""
        return await self._db.write(lambda session: withdraw(session, run_id))

    async def release(self, run_id: str) -> None:
        """Free the slots of a run that ended (the next decision frees them too, should this fail)."""
        await self._db.write(lambda session: release(session, run_id))


async def lock(session: AsyncSession) -> None:
    if (await session.connection()).dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _QUEUE_LOCK})


def new_row(entry: Waiting, rows: list[QueueRow], now: dt.datetime) -> QueueRow:
    """The row of a run joining a queue that holds ``rows``, with its caller's next turn."""
    waiting, holding = parse(rows)
    return QueueRow(
        run_id=entry.run_id,
        caller=entry.caller,
        size=entry.size,
        allowed=json.dumps(list(entry.allowed)),
        state=WAITING,
        turn=next_turn(entry.caller, waiting, holding),
        enqueued_at=now,
    )


def parse(rows: list[QueueRow]) -> tuple[list[Waiting], list[Holding]]:
    waiting = [
        Waiting(r.run_id, r.caller, r.size, tuple(json.loads(r.allowed)), as_utc(r.enqueued_at), r.turn)
        for r in rows
        if r.state == WAITING
    ]
    holding = [Holding(r.run_id, r.caller, tuple(json.loads(r.slots)), r.turn) for r in rows if r.state == ACTIVE]
    return waiting, holding


async def live_rows(session: AsyncSession, now: dt.datetime) -> list[QueueRow]:
    """The queue's rows whose run is still RUNNING under a live lease; the others are deleted."""
    rows = await session.execute(
        select(QueueRow, RunRow.status, RunRow.lease_expires).join(RunRow, RunRow.id == QueueRow.run_id, isouter=True)
    )
    live: list[QueueRow] = []
    gone: list[QueueRow] = []
    for row, status, lease in rows:
        alive = status == pb.RUN_STATUS_RUNNING and lease is not None and as_utc(lease) >= now
        (live if alive else gone).append(row)
    if gone:
        await session.execute(delete(QueueRow).where(QueueRow.run_id.in_([row.run_id for row in gone])))
    return live


async def decide(
    session: AsyncSession, rows: list[QueueRow], capacity: Capacity, propose: Proposer, now: dt.datetime
) -> QueueState:
    """Start what fits (``admission.plan``), write it, and return the queue as it now is."""
    waiting, holding = parse(rows)
    decided: Plan = plan(waiting, holding, capacity, propose)
    for run_id, slots in decided.started.items():
        await session.execute(
            update(QueueRow)
            .where(QueueRow.run_id == run_id, QueueRow.state == WAITING)
            .values(state=ACTIVE, slots=json.dumps(list(slots)), started_at=now)
        )
    started = {held.run_id: held.slots for held in holding} | decided.started
    sizes = {r.run_id: r.size for r in rows if r.run_id in started}
    arrivals = {w.run_id: w.enqueued_at for w in waiting if w.run_id not in decided.started}
    return QueueState(started, sizes, decided.positions, arrivals, sum(sizes[i] for i in decided.started))


async def withdraw(session: AsyncSession, run_id: str) -> bool:
    """Take a run that still waits out of the queue; False when it has started meanwhile."""
    result = await session.execute(delete(QueueRow).where(QueueRow.run_id == run_id, QueueRow.state == WAITING))
    return int(cast("Any", result).rowcount) == 1


async def release(session: AsyncSession, run_id: str) -> None:
    await session.execute(delete(QueueRow).where(QueueRow.run_id == run_id))
