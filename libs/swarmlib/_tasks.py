"""Background work an object starts and must account for when it closes.

Some work is worth finishing only while its owner is open (booting a devbox: cancelled on close);
some must happen even then (a create call already sent, whose devbox has to be shut down, or the
shutdown itself: awaited on close, never cancelled). Every task's exception is retrieved when it
ends, so asyncio never reports it as lost; naming the work (``what``) also logs the failure, for
work nobody awaits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

_T = TypeVar("_T")
OnClose = Literal["cancel", "await"]

_log = logging.getLogger(__name__)


class TaskCancelledError(Exception):
    """The shared task a caller waited for was cancelled (its owner closed); the caller was not."""


class BackgroundTasks:
    """The tasks one owner started, each cancelled or awaited when the owner closes.

    ``log`` is the owner's logger, so a failure is reported under the name of what failed.
    """

    def __init__(self, log: logging.Logger | None = None) -> None:
        self._log = log or _log
        self._cancelled_on_close: set[asyncio.Task[Any]] = set()
        self._awaited_on_close: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._cancelled_on_close) + len(self._awaited_on_close)

    def spawn(
        self, coro: Coroutine[Any, Any, _T], *, on_close: OnClose = "cancel", what: str | None = None
    ) -> asyncio.Task[_T]:
        """Run ``coro`` in the background; ``what`` (``"boot a devbox"``) names it in the log if it fails."""
        task = asyncio.ensure_future(coro)
        (self._cancelled_on_close if on_close == "cancel" else self._awaited_on_close).add(task)
        task.add_done_callback(lambda done: self._reap(done, what))
        return task

    def _reap(self, task: asyncio.Task[Any], what: str | None) -> None:
        self._cancelled_on_close.discard(task)
        self._awaited_on_close.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here so asyncio never reports it as lost
        if exc is not None and what is not None:
            self._log.warning("could not %s: %s", what, exc)

    async def settle(self) -> None:
        """Wait until no task is left, those started meanwhile included (tests and benches)."""
        while pending := (self._cancelled_on_close | self._awaited_on_close) - {asyncio.current_task()}:
            await asyncio.gather(*pending, return_exceptions=True)

    async def aclose(self) -> None:
        """Cancel the tasks spawned with ``on_close="cancel"`` and wait for them, then for every other one."""
        cancelled = list(self._cancelled_on_close)
        for task in cancelled:
            task.cancel()
        await asyncio.gather(*cancelled, return_exceptions=True)
        while self._awaited_on_close:
            await asyncio.gather(*self._awaited_on_close, return_exceptions=True)


async def wait_shared(task: asyncio.Task[_T]) -> _T:
    """Wait for ``task``, which other callers may wait for too, without cancelling it if this one gives up.

    A caller that is cancelled gets ``CancelledError`` and leaves ``task`` running; if ``task``
    itself was cancelled (its owner closed) while the caller was not, ``TaskCancelledError``.
    """
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if not task.cancelled() or (current is not None and current.cancelling()):
            raise
        raise TaskCancelledError from None
