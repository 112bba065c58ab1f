"""The run queue at the door, as one replica sees it: a run joins as it is accepted, waits (seeing
its place) until the queue starts it with its slots, and frees them when it ends.

Decisions are made in the store (``store_queue``), so every replica on one database shares one
queue. This replica makes one when one of its runs joins or ends, and every ``poll_s`` while any
of its runs waits, to see room that another replica freed. Why the rules are what they are:
docs/queue.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from swarm.v1 import orchestrator_pb2 as pb
from swarmlib import QueueTimeoutError, StoreUnavailableError

from .admission import Admitted, Capacity, Waiting
from .config import OrchestratorConfig
from .pool import InstancePool
from .store import RunStore
from .store_queue import QueueRoom, QueueState

log = logging.getLogger(__name__)

EmitQueued = Callable[[pb.RunQueued], Awaitable[None]]


@dataclass
class _Waiter:
    joined: float  # time.monotonic() when it joined
    started: asyncio.Future[tuple[str, ...]] = field(default_factory=lambda: asyncio.get_running_loop().create_future())
    place: tuple[int, int] = (0, 0)  # (position, depth) last decided
    moved: asyncio.Event = field(default_factory=asyncio.Event)


class RunQueue:
    """Joins, waits and leaves of this replica's runs; one decision loop for all of them."""

    def __init__(self, config: OrchestratorConfig, pool: InstancePool, store: RunStore) -> None:
        self._config = config
        self._pool = pool
        self._store = store
        self._waiters: dict[str, _Waiter] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def waiting(self) -> set[str]:
        """This replica's runs in the queue (their leases must be renewed like running ones)."""
        return set(self._waiters)

    def capacity(self) -> Capacity:
        # A parked instance has no room, and the refine-only one takes no answer.
        specs = (self._pool.spec(n) for n in self._config.answering(self._pool.serving))
        slots = {s.name: s.slots or self._config.instance_slots for s in specs}
        return Capacity(slots, self._config.max_active_runs)

    def _room(self) -> QueueRoom:
        def propose(run: Waiting, offset: int) -> tuple[str, ...]:
            serving = self._config.answering(self._pool.serving)
            known = [name for name in run.allowed if name in serving] or serving
            answers = self._pool.propose(run.size, known, offset)
            return (*answers, *self._pool.writers_for(known, self._config.test_writers))

        return QueueRoom(self.capacity(), self._config.queue_size, propose)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="run-queue")

    async def aclose(self) -> None:
        # A flag as well as the cancel: Python 3.11's wait_for swallows a cancel that arrives just
        # as the event it waits for is set (a run leaving at shutdown), and the loop would go on.
        self._closed = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def join(self, run: pb.Run, tenant: str, caller: str, allowed: list[str]) -> None:
        """Store ``run`` (of ``tenant``) and queue it, taking turns as ``caller``;
        ``ResourceExhaustedError`` (nothing stored) when the queue is full."""
        entry = Waiting(run.id, caller, run.swarm_size, tuple(allowed), dt.datetime.now(dt.UTC))
        self._waiters[run.id] = _Waiter(time.monotonic())
        try:
            state = await self._store.queue.enqueue(run, tenant, entry, self._room())
        except BaseException:
            del self._waiters[run.id]
            raise
        self._apply(state)

    async def wait(self, run_id: str, emit: EmitQueued) -> Admitted:
        """Until the run starts, telling ``emit`` its place whenever it moves; ``QueueTimeoutError``
        after SWARM_QUEUE_TIMEOUT_S (the run is then out of the queue)."""
        waiter = self._waiters[run_id]
        timeout_s = self._config.queue_timeout_s
        try:
            while not waiter.started.done():
                if waiter.place[0] > 0:
                    position, depth = waiter.place
                    await emit(
                        pb.RunQueued(
                            position=position,
                            depth=depth,
                            waited_ms=(time.monotonic() - waiter.joined) * 1000,
                            timeout_ms=timeout_s * 1000,
                        )
                    )
                waiter.moved.clear()
                left = waiter.joined + timeout_s - time.monotonic()
                if left <= 0:
                    await self._give_up(run_id, waiter)
                    break
                moved = asyncio.create_task(waiter.moved.wait())
                either: list[asyncio.Future[Any]] = [moved, waiter.started]
                try:
                    await asyncio.wait(either, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    moved.cancel()
            assignment = await waiter.started
        finally:
            self._waiters.pop(run_id, None)
        return Admitted(assignment, (time.monotonic() - waiter.joined) * 1000)

    async def _give_up(self, run_id: str, waiter: _Waiter) -> None:
        if await self._store.queue.withdraw(run_id):
            waited = time.monotonic() - waiter.joined
            raise QueueTimeoutError(
                f"no capacity for {waited:.0f} s: the run waited in the queue at the door until SWARM_QUEUE_TIMEOUT_S="
                f"{self._config.queue_timeout_s:g} and nothing was called; send the task again later, or ask the "
                "operator for more instance slots"
            )
        # It started on another decision just before: learn its slots and go on.
        self._apply(await self._store.queue.decide(self._room()))
        if not waiter.started.done():  # not waiting and not started: it left the queue some other way
            raise QueueTimeoutError(f"run {run_id} is no longer in the queue at the door; send the task again")

    async def leave(self, run_id: str) -> None:
        """The run ended (or never started): free its slots and let the next one in."""
        self._waiters.pop(run_id, None)
        try:
            await self._store.queue.release(run_id)
        except StoreUnavailableError as exc:  # the next decision frees them once the run is not RUNNING
            log.warning("run %s: could not free its queue slots now: %s", run_id, exc)
        self._wake.set()

    def _apply(self, state: QueueState) -> None:
        """Wake the runs that started, tell the others their place, move the round-robin on."""
        for run_id, waiter in self._waiters.items():
            if run_id in state.started and not waiter.started.done():
                waiter.started.set_result(state.started[run_id][: state.sizes[run_id]])
            elif run_id in state.positions:
                place = (state.positions[run_id], state.depth)
                if place != waiter.place:
                    waiter.place = place
                    waiter.moved.set()
        if state.newly_started:
            self._pool.advance(state.newly_started)

    async def state(self) -> QueueState:
        """The shared queue now (after starting what fits)."""
        state = await self._store.queue.decide(self._room())
        self._apply(state)
        return state

    async def _loop(self) -> None:
        while not self._closed:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.queue_poll_s):
                    await self._wake.wait()
            self._wake.clear()
            if self._closed or not self._waiters:
                continue
            try:
                self._apply(await self._store.queue.decide(self._room()))
            except StoreUnavailableError as exc:
                log.warning("run queue: no decision this round: %s", exc)
            except Exception:  # a bug here must not stop the queue: its runs would wait until they time out
                log.exception("run queue: decision failed")
