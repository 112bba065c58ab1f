"""A warm pool of Runloop devboxes, so an execution rarely waits for one to boot.

Booting a devbox takes seconds to minutes; running a program on a running one takes a few round
trips. The pool keeps ``pool_size`` devboxes, lends each to one execution at a time, and grows on
demand up to ``max_devboxes``. A devbox idle for ``idle_suspend_s`` is suspended (it then costs
disk only, and resumes faster than a new one boots); one idle for ``idle_shutdown_s`` beyond the
pool size is shut down. A devbox whose status is not ``running`` when checked is shut down and
replaced, so a dead one is never lent twice.

The Runloop rules every caller here follows (idempotency keys, errors that never contain the API
key, best-effort shutdown) are in ``_runloop``. Time is read from an injectable clock so the idle
policy can be tested without waiting for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from runloop_api_client import AsyncRunloop

from ._errors import SandboxUnavailableError
from ._runloop import (
    Clock,
    api_errors,
    blueprint_ref,
    devbox_stopped,
    idempotency_key,
    polling,
    shutdown_devbox,
)
from ._runloop_config import RunloopConfig
from ._tasks import BackgroundTasks, TaskCancelledError, wait_shared

log = logging.getLogger(__name__)

ReadyHook = Callable[[str], Awaitable[None]]


class BoxState(enum.Enum):
    STARTING = "starting"  # being created or resumed
    IDLE = "idle"  # running, lendable
    BUSY = "busy"  # lent to one execution
    RETURNING = "returning"  # execution done, being cleaned: lendable again in a moment
    SUSPENDING = "suspending"
    SUSPENDED = "suspended"


@dataclass(eq=False)
class Devbox:
    """One devbox the pool owns; ``idle_since`` is on the pool's clock."""

    id: str
    state: BoxState
    idle_since: float


class DevboxPool:
    """Lends running devboxes, one execution each; boots, resumes, suspends and retires them."""

    def __init__(
        self,
        client: AsyncRunloop,
        config: RunloopConfig,
        *,
        clock: Clock = time.monotonic,
        on_ready: ReadyHook | None = None,
    ) -> None:
        self._client = client
        self._config = config
        self._clock = clock
        self._on_ready = on_ready
        self._boxes: dict[str, Devbox] = {}
        self._creating = 0  # creates whose devbox id is not known yet
        self._waiting = 0
        self._cond = asyncio.Condition()
        # Boots and warming are cancelled on close; create calls and shutdowns are awaited.
        self._tasks = BackgroundTasks(log)
        self._boots: set[asyncio.Task[None]] = set()  # creates and resumes, awaited by warm()
        self._closed = False

    def __repr__(self) -> str:
        return f"DevboxPool({self.counts()})"

    def counts(self) -> dict[str, int]:
        """How many devboxes are in each state (plus creates in flight), for tests and benches."""
        out = {state.value: 0 for state in BoxState}
        for box in self._boxes.values():
            out[box.state.value] += 1
        out["creating"] = self._creating
        return out

    @property
    def devbox_ids(self) -> list[str]:
        return list(self._boxes)

    # -- lending ---------------------------------------------------------------------------

    async def acquire(self) -> Devbox:
        """A running devbox lent to the caller alone: an idle one, else resumed, else new."""
        self._waiting += 1  # callers in acquire without a devbox yet
        try:
            while True:
                async with self._cond:
                    self._check_open()
                    box = self._take_idle()
                    if box is not None:
                        return box
                    start = self._start_for_demand()
                    if start is None:
                        await self._cond.wait()
                        continue
                # A caller that gives up must not cancel a boot others may use; a boot cancelled
                # by close sends the caller round again, to be told the pool is closed.
                with contextlib.suppress(TaskCancelledError):
                    await wait_shared(start)
        finally:
            self._waiting -= 1

    def returning(self, box: Devbox) -> None:
        """``box`` finished its execution and is being cleaned: a caller waits for it rather than boot another."""
        if self._boxes.get(box.id) is box and box.state is BoxState.BUSY:
            box.state = BoxState.RETURNING

    async def release(self, box: Devbox, *, healthy: bool = True) -> None:
        """Take ``box`` back; when the execution went wrong, check its status before lending it again."""
        if self._closed or self._boxes.get(box.id) is not box:
            return
        if not healthy and not await self._is_running(box):
            return
        await self._make_idle(box)

    async def discard(self, box: Devbox, why: str) -> None:
        """Forget ``box``, shut it down (forced: it may be mid-snapshot) and boot a replacement."""
        if self._boxes.get(box.id) is not box:
            return
        log.warning("Runloop devbox %s replaced: %s", box.id, why)
        async with self._cond:
            del self._boxes[box.id]
            self._cond.notify_all()
        self._shutdown_later(box.id, force=True)
        self._refill()

    def _take_idle(self) -> Devbox | None:
        idle = [b for b in self._boxes.values() if b.state is BoxState.IDLE]
        if not idle:
            return None
        # Most recently used first, so the others age and can be suspended or retired.
        box = max(idle, key=lambda b: b.idle_since)
        box.state = BoxState.BUSY
        return box

    def _start_for_demand(self) -> asyncio.Task[None] | None:
        """Boot one more devbox if waiting callers outnumber those booting or returning (lock held)."""
        coming = (BoxState.STARTING, BoxState.RETURNING)
        starting = self._creating + sum(b.state in coming for b in self._boxes.values())
        if self._waiting <= starting:
            return None
        suspended = [b for b in self._boxes.values() if b.state is BoxState.SUSPENDED]
        if suspended:
            box = max(suspended, key=lambda b: b.idle_since)
            box.state = BoxState.STARTING
            return self._spawn(self._resume(box), boot=True)
        if len(self._boxes) + self._creating < self._config.max_devboxes:
            self._creating += 1
            return self._spawn(self._create(), boot=True)
        return None

    def _check_open(self) -> None:
        if self._closed:
            raise SandboxUnavailableError("the Runloop sandbox is closed")

    async def _notify(self) -> None:
        async with self._cond:
            self._cond.notify_all()

    async def _make_idle(self, box: Devbox) -> None:
        async with self._cond:
            box.state = BoxState.IDLE
            box.idle_since = self._clock()
            self._cond.notify_all()

    # -- warming ---------------------------------------------------------------------------

    async def warm(self) -> None:
        """Boot devboxes until ``pool_size`` exist, and wait until every boot in flight is done."""
        async with self._cond:
            self._check_open()
            self._refill()
            starts = list(self._boots)
        results = await asyncio.gather(*(asyncio.shield(t) for t in starts), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def settle(self) -> None:
        """Wait until no background work (boot, suspend, shutdown) is left; for tests and benches."""
        await self._tasks.settle()

    def start_warming(self) -> None:
        """Warm in the background; failures are logged and the next acquire tries again."""
        if not self._closed:
            self._spawn(self._warm_quietly(), what="warm the devbox pool")

    async def _warm_quietly(self) -> None:
        await self.warm()

    def _refill(self) -> None:
        if self._closed:
            return
        missing = self._config.pool_size - len(self._boxes) - self._creating
        for _ in range(max(0, missing)):
            self._creating += 1
            self._spawn(self._create(), what="boot a devbox for the pool", boot=True)

    # -- boot, resume, suspend, shutdown ---------------------------------------------------

    async def _create(self) -> None:
        # The create call runs on its own: if this task is cancelled (on close), the devbox the
        # API made is still registered, so close shuts it down instead of leaking it.
        post = self._tasks.spawn(self._post_create(idempotency_key("create")), on_close="await")
        try:
            box = await asyncio.shield(post)
        except SandboxUnavailableError:
            await self._notify()
            raise
        await self._boot(box, ready_hook=True)

    async def _post_create(self, key: str) -> Devbox:
        """The create call alone, registering the devbox as soon as its id is known."""
        try:
            with api_errors("create a devbox", self._config.max_retries):
                view = await self._client.devboxes.create(
                    **blueprint_ref(self._config.blueprint),
                    name="swarm-sandbox",
                    metadata={"swarm": "sandbox"},
                    idempotency_key=key,
                )
        finally:
            self._creating -= 1
        box = Devbox(view.id, BoxState.STARTING, self._clock())
        self._boxes[box.id] = box
        log.info("Runloop devbox %s created (%s)", box.id, view.status)
        return box

    async def _boot(self, box: Devbox, *, ready_hook: bool) -> None:
        """Wait until ``box`` runs, then make it lendable; a box that cannot boot is dropped."""
        try:
            self._check_open()
            with api_errors(f"boot devbox {box.id}", self._config.max_retries):
                await self._client.devboxes.await_running(box.id, polling_config=polling(self._config.boot_timeout_s))
            if ready_hook and self._on_ready is not None:
                await self._on_ready(box.id)
        except BaseException:
            if self._boxes.get(box.id) is box and not self._closed:
                del self._boxes[box.id]
                self._shutdown_later(box.id, force=True)
                await self._notify()
                self._refill()
            raise
        await self._make_idle(box)

    async def _resume(self, box: Devbox) -> None:
        """Resume a suspended box; if it will not come back, drop it (acquire then boots another)."""
        try:
            with api_errors(f"resume devbox {box.id}", self._config.max_retries):
                await self._client.devboxes.resume(box.id, idempotency_key=idempotency_key("resume"))
            await self._boot(box, ready_hook=False)
        except SandboxUnavailableError as exc:
            log.warning("Runloop devbox %s did not resume: %s", box.id, exc)
            await self.discard(box, "it did not resume")

    async def _suspend(self, box: Devbox) -> None:
        try:
            with api_errors(f"suspend devbox {box.id}", self._config.max_retries):
                await self._client.devboxes.suspend(box.id, idempotency_key=idempotency_key("suspend"))
                await self._client.devboxes.await_suspended(box.id, polling_config=polling(self._config.boot_timeout_s))
        except SandboxUnavailableError as exc:
            await self.discard(box, f"it did not suspend: {exc}")
            return
        async with self._cond:
            if self._boxes.get(box.id) is box:
                box.state = BoxState.SUSPENDED
                self._cond.notify_all()
        log.info("Runloop devbox %s suspended after being idle", box.id)

    async def _shutdown(self, box_id: str, *, force: bool) -> None:
        await shutdown_devbox(self._client, box_id, force=force, retries=self._config.max_retries)

    def _shutdown_later(self, box_id: str, *, force: bool) -> None:
        """Shut ``box_id`` down in the background; closing waits for it rather than cancel it."""
        self._tasks.spawn(self._shutdown(box_id, force=force), on_close="await")

    async def _is_running(self, box: Devbox) -> bool:
        """Health check: True when the API says ``running`` (or cannot say); otherwise replace the box."""
        try:
            stopped = await devbox_stopped(self._client, box.id, self._config.max_retries)
        except SandboxUnavailableError as exc:
            log.warning("%s", exc)
            return True
        if stopped is None:
            return True
        await self.discard(box, stopped)
        return False

    # -- idle policy -----------------------------------------------------------------------

    async def maintain_forever(self) -> None:
        """Run ``maintain`` periodically (a quarter of the suspend time, 1 to 60 s) until cancelled."""
        interval = min(max(self._config.idle_suspend_s / 4, 1.0), 60.0)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.maintain()
            except Exception as exc:
                log.warning("Runloop devbox pool maintenance failed: %s", exc)

    async def maintain(self) -> None:
        """One pass of the idle policy and health checks; the sandbox runs it periodically."""
        cfg = self._config
        now = self._clock()
        retire: list[Devbox] = []
        suspend: list[Devbox] = []
        check: list[Devbox] = []
        async with self._cond:
            if self._closed:
                return
            resting = sorted(
                (b for b in self._boxes.values() if b.state in (BoxState.IDLE, BoxState.SUSPENDED)),
                key=lambda b: b.idle_since,
            )
            excess = len(self._boxes) + self._creating - cfg.pool_size
            for box in resting:
                idle_for = now - box.idle_since
                if excess > 0 and idle_for >= cfg.idle_shutdown_s:
                    excess -= 1
                    del self._boxes[box.id]
                    retire.append(box)
                elif box.state is BoxState.IDLE and idle_for >= cfg.idle_suspend_s:
                    box.state = BoxState.SUSPENDING
                    suspend.append(box)
                elif box.state is BoxState.IDLE:
                    check.append(box)
        for box in retire:
            log.info("Runloop devbox %s shut down after %.0fs idle", box.id, now - box.idle_since)
        await asyncio.gather(
            *(self._shutdown(b.id, force=False) for b in retire),
            *(self._suspend(b) for b in suspend),
            *(self._is_running(b) for b in check),
        )
        self._refill()

    # -- background work and closing -------------------------------------------------------

    def _spawn(
        self, coro: Coroutine[Any, Any, None], *, what: str | None = None, boot: bool = False
    ) -> asyncio.Task[None]:
        """Background work cancelled on close; ``what`` names it in the log line if it fails unobserved."""
        task = self._tasks.spawn(coro, what=what)
        if boot:
            self._boots.add(task)
            task.add_done_callback(self._boots.discard)
        return task

    async def aclose(self) -> None:
        """Shut down every devbox the pool created, forced so a suspend in progress cannot block it."""
        if self._closed:
            return
        self._closed = True
        await self._notify()
        # A create already sent still yields a devbox: closing waits for its id so it is shut down too.
        await self._tasks.aclose()
        ids = list(self._boxes)
        self._boxes.clear()
        await asyncio.gather(*(self._shutdown(box_id, force=True) for box_id in ids))
