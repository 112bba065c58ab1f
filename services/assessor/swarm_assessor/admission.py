"""Backpressure: how many sandbox executions run at once, how many may wait, and for how long.

Without a bound, a burst of large requests would queue executions without limit and every
caller would time out together. The assessor instead admits a request only when all of its
executions fit in the running + waiting budget, answers RESOURCE_EXHAUSTED at once when they do
not (the caller can retry or go elsewhere), and gives up on a waiting execution when its queue
deadline passes rather than running it for a caller that has stopped listening.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

from swarmlib import ResourceExhaustedError


class Admission:
    """``limit`` executions run at once; up to ``queue`` more wait, each for at most a deadline."""

    def __init__(self, limit: int, queue: int) -> None:
        self._limit = limit
        self._capacity = limit + queue
        self._slots = asyncio.Semaphore(limit)
        self._pending = 0

    @property
    def pending(self) -> int:
        """Executions admitted and not finished (running or waiting)."""
        return self._pending

    @contextlib.contextmanager
    def admit(self, executions: int) -> Iterator[None]:
        """Reserve room for a request's ``executions``, or refuse the whole request now."""
        if self._pending + executions > self._capacity:
            raise ResourceExhaustedError(
                f"the assessor is at capacity: {self._pending} executions running or queued, "
                f"{executions} more asked, room for {self._capacity}; retry after a short wait"
            )
        self._pending += executions
        try:
            yield
        finally:
            self._pending -= executions

    @contextlib.asynccontextmanager
    async def slot(self, deadline: float) -> AsyncIterator[None]:
        """Wait until the loop-clock ``deadline`` at most for one of the ``limit`` slots, then hold it."""
        wait_s = max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            async with asyncio.timeout_at(deadline):
                await self._slots.acquire()
        except TimeoutError:
            raise ResourceExhaustedError(
                f"no sandbox slot freed within {wait_s:g}s ({self._limit} executions at once); "
                "retry later or raise SWARM_ASSESSOR_MAX_CONCURRENCY"
            ) from None
        try:
            yield
        finally:
            self._slots.release()
