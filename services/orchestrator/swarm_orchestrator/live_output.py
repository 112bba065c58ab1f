"""One attempt's answer text as ``instance_output`` events, batched so a run is not a message a token.

The rule (first text at once, then at most one event per interval, the rest before the attempt
ends) and what a client can rely on are in docs/live-output.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from swarm.v1 import orchestrator_pb2 as pb
from swarmlib import OnText

Emit = Callable[[pb.RunSwarmResponse], Awaitable[None]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class Batch:
    """The text of one attempt not sent yet, and when it may be sent; no clock of its own."""

    interval_s: float
    pending: list[str] = field(default_factory=list)
    length: int = 0
    last_sent: float | None = None

    def add(self, delta: str) -> None:
        self.pending.append(delta)
        self.length += len(delta)

    def wait_s(self, now: float) -> float:
        """Seconds from ``now`` until the pending text may go (0: at once; the first batch never waits)."""
        if self.last_sent is None:
            return 0.0
        return max(0.0, self.last_sent + self.interval_s - now)

    def take(self, now: float) -> tuple[str, int] | None:
        """The pending text joined and the attempt's length so far; None when nothing is pending."""
        if not self.pending:
            return None
        text = "".join(self.pending)
        self.pending.clear()
        self.last_sent = now
        return text, self.length


class AttemptOutput:
    """Sends one attempt's text through ``emit``: when due as it arrives, else when a timer says so,
    and what is left on ``close``. A timer rather than the next delta, so an instance that pauses
    does not hold back text it already produced."""

    def __init__(
        self,
        emit: Emit,
        slot: int,
        instance: str,
        attempt: int,
        interval_s: float,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._emit = emit
        self._slot = slot
        self._instance = instance
        self._attempt = attempt
        self._batch = Batch(interval_s)
        self._clock = clock
        self._sleep = sleep
        # Held while a batch is taken and emitted, so batches leave in the order they were taken.
        self._sending = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None

    async def add(self, delta: str) -> None:
        """Take one delta of the attempt's text (the ``on_text`` of its LLM call)."""
        self._batch.add(delta)
        if self._timer is not None:
            return  # a batch is already waiting for its time; this text joins it
        wait = self._batch.wait_s(self._clock())
        if wait <= 0:
            await self._send()
        else:
            self._timer = asyncio.create_task(self._send_after(wait))

    async def close(self) -> None:
        """The attempt ended (answered or failed): send what is pending, and nothing after."""
        self.abandon()
        await self._send()

    def abandon(self) -> None:
        """The run is being torn down: send nothing more."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _send_after(self, wait: float) -> None:
        await self._sleep(wait)
        self._timer = None
        await self._send()

    async def _send(self) -> None:
        async with self._sending:
            taken = self._batch.take(self._clock())
            if taken is None:
                return
            delta, length = taken
            output = pb.InstanceOutput(
                slot=self._slot, instance=self._instance, attempt=self._attempt, delta=delta, length=length
            )
            await self._emit(pb.RunSwarmResponse(instance_output=output))


@contextlib.asynccontextmanager
async def watch(
    emit: Emit, slot: int, instance: str, attempt: int, interval_s: float | None
) -> AsyncIterator[OnText | None]:
    """The ``on_text`` for one attempt's LLM call (None when the run did not ask for its text).

    Whatever the call ends with, an ``Exception`` included, the pending text is sent before the
    block is left, so it precedes the attempt's ``instance_finished`` / ``instance_failed``; a
    cancellation sends nothing more.
    """
    if interval_s is None:
        yield None
        return
    output = AttemptOutput(emit, slot, instance, attempt, interval_s)
    try:
        yield output.add
    except Exception:
        await output.close()
        raise
    except BaseException:
        output.abandon()
        raise
    await output.close()
