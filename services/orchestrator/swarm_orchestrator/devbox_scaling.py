"""The devbox scaler's loop: look at the run queue and the devboxes, decide (``devbox_scaler``), act.

Growing provisions the next parked slot and adds it to the pool only once its model server
answers, so the queue never hands out slots on a devbox that is still booting (runs keep
waiting where they can see their place). Shrinking is a drain: the devbox is parked in the pool
at once (no new run, test writer or retry is given to it) and its devbox is shut down only when no
run holds a slot on it and no call to it is in flight. Before growing the scaler asks ``may_grow``
("may I spend on one more devbox?"), the budget's hook; until budgets are wired it always says
yes. The policy: docs/queue.md, "Scaling the devbox pool".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from swarmlib._runloop import Clock

from .devbox_manager import DevboxInstances, SlotState
from .devbox_scaler import Action, Decision, Memory, ScalePolicy, Seen, decide, observe
from .pool import InstancePool
from .run_queue import RunQueue

log = logging.getLogger(__name__)

# Asked before each growth: may the swarm spend on one more devbox? (the budget's hook)
MayGrow = Callable[[], Awaitable[bool]]


async def always_grow() -> bool:
    """The default ``MayGrow``: no budget limits the pool (only SWARM_DEVBOX_MAX does)."""
    return True


class DevboxScaler:
    """Grows and shrinks the devbox pool, one step at a time; ``step`` is one look (tests call it)."""

    def __init__(
        self,
        policy: ScalePolicy,
        devboxes: DevboxInstances,
        pool: InstancePool,
        queue: RunQueue,
        *,
        may_grow: MayGrow = always_grow,
        clock: Clock = time.monotonic,
    ) -> None:
        self._policy = policy
        self._devboxes = devboxes
        self._pool = pool
        self._queue = queue
        self._may_grow = may_grow
        self._clock = clock
        self._memory = Memory()
        self._joining: set[str] = set()  # grown: booting, joins the pool when ready
        self._draining: set[str] = set()  # shrunk: parked in the pool, runs on it not yet over
        self._last_busy = {name: clock() for name in devboxes.names}
        self._task: asyncio.Task[None] | None = None
        self.steps: list[Decision] = []  # every growth and shrink taken (tests, benches)

    @property
    def serving(self) -> list[str]:
        """The devbox instances in the pool now, in slot order."""
        serving = set(self._pool.serving)
        return [name for name in self._devboxes.names if name in serving]

    async def step(self) -> Decision:
        """Look once: finish the steps under way, then decide and start the next one, if any."""
        state = await self._queue.state()
        now = self._clock()
        in_use = state.in_use()
        names = self._devboxes.names
        busy = {n for n in names if in_use.get(n, 0) or self._devboxes.slot(n).in_flight}
        for name in busy:
            self._last_busy[name] = now
        for name in sorted(self._joining):
            if self._devboxes.slot(name).state is SlotState.READY:
                self._joining.discard(name)
                self._pool.unpark(name)
                self._last_busy[name] = now
                log.info("devbox pool: %s joined (%d serving)", name, len(self.serving))
        for name in sorted(self._draining - busy):
            self._draining.discard(name)
            self._devboxes.park(name)
            log.info("devbox pool: %s drained and shut down (%d serving)", name, len(self.serving))
        serving = tuple(self.serving)
        parked = tuple(n for n in names if n not in serving and n not in self._joining | self._draining)
        seen = Seen(
            now,
            state.depth,
            serving,
            parked,
            {n: None if n in busy else self._last_busy[n] for n in serving},
            changing=bool(self._joining or self._draining),
        )
        decision, memory = decide(self._policy, self._memory, seen)
        if decision.action is Action.GROW and not await self._may_grow():
            self._memory = observe(self._policy, self._memory, seen)
            log.info("devbox pool: no growth into %s (%s): the budget says no", decision.name, decision.reason)
            return Decision(Action.HOLD, reason="the budget allows no more devboxes")
        self._memory = memory
        if decision.action is Action.GROW:
            self._joining.add(decision.name)
            self._devboxes.unpark(decision.name)
        elif decision.action is Action.SHRINK:
            self._draining.add(decision.name)
            self._pool.park(decision.name)
        if decision.action is not Action.HOLD:
            self.steps.append(decision)
            log.info("devbox pool: %s %s: %s", decision.action.value, decision.name, decision.reason)
        return decision

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="devbox-scaler")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._policy.interval_s)
            try:
                await self.step()
            except Exception:  # a bug or a store outage here must not stop scaling for good
                log.exception("devbox scaler: step failed")
