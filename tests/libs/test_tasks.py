"""BackgroundTasks and wait_shared: what is cancelled or awaited on close, and no exception is lost."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from swarmlib import BackgroundTasks, TaskCancelledError, wait_shared


class Boom(Exception):
    pass


async def fail(after: float = 0.0) -> None:
    await asyncio.sleep(after)
    raise Boom("it broke")


async def test_close_cancels_cancellable_work_and_waits_for_awaited_work() -> None:
    tasks = BackgroundTasks()
    gate = asyncio.Event()
    finished: list[str] = []

    async def forever() -> None:
        await asyncio.Event().wait()

    async def shutdown() -> str:
        await gate.wait()  # still running when close begins
        finished.append("shutdown")
        return "done"

    boot = tasks.spawn(forever(), on_close="cancel")
    kept = tasks.spawn(shutdown(), on_close="await")
    assert len(tasks) == 2
    closing = asyncio.ensure_future(tasks.aclose())
    await asyncio.sleep(0.01)
    assert boot.cancelled() and not closing.done()  # close waits for the kept task, never cancels it
    gate.set()
    await closing
    assert not kept.cancelled() and kept.result() == "done" and finished == ["shutdown"]
    assert len(tasks) == 0


async def test_close_waits_for_awaited_work_that_awaited_work_starts() -> None:
    tasks = BackgroundTasks()
    order: list[str] = []

    async def second() -> None:
        await asyncio.sleep(0.01)
        order.append("second")

    async def first() -> None:
        await asyncio.sleep(0.01)
        order.append("first")
        tasks.spawn(second(), on_close="await")

    tasks.spawn(first(), on_close="await")
    await tasks.aclose()
    assert order == ["first", "second"] and len(tasks) == 0


async def test_settle_waits_for_work_started_meanwhile_and_not_for_itself() -> None:
    tasks = BackgroundTasks()
    done: list[str] = []

    async def later() -> None:
        await asyncio.sleep(0.01)
        done.append("later")

    async def step() -> None:
        await asyncio.sleep(0.01)
        tasks.spawn(later())
        done.append("step")

    async def settles_from_inside() -> None:
        await tasks.settle()  # a tracked task that settles must not wait for itself
        done.append("inside")

    tasks.spawn(step())
    tasks.spawn(fail(0.01))  # a failure does not stop settle
    await tasks.settle()
    assert done == ["step", "later"] and len(tasks) == 0

    await asyncio.wait_for(tasks.spawn(settles_from_inside()), 1.0)
    assert done[-1] == "inside"


async def test_failures_are_retrieved_and_named_work_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.get_running_loop()
    lost: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _, context: lost.append(context))
    try:
        # Control: a bare task whose failure nobody reads is reported as lost when collected.
        bare = asyncio.ensure_future(fail())
        await asyncio.sleep(0.01)
        assert bare.done()
        del bare
        gc.collect()
        assert [c["message"] for c in lost] == ["Task exception was never retrieved"]
        lost.clear()

        tasks = BackgroundTasks(logging.getLogger("owner"))
        with caplog.at_level(logging.WARNING, logger="owner"):
            tasks.spawn(fail(), what="boot a devbox")
            tasks.spawn(fail(), on_close="await")  # unnamed: retrieved, not logged
            await tasks.settle()
        gc.collect()
        assert lost == []
        assert [(r.name, r.getMessage()) for r in caplog.records] == [("owner", "could not boot a devbox: it broke")]
    finally:
        loop.set_exception_handler(previous)


async def test_a_cancelled_task_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    tasks = BackgroundTasks()
    with caplog.at_level(logging.WARNING):
        tasks.spawn(asyncio.sleep(10), what="sleep")
        await tasks.aclose()
    assert caplog.records == []


async def test_wait_shared_leaves_the_task_running_when_the_caller_gives_up() -> None:
    release = asyncio.Event()

    async def boot() -> str:
        await release.wait()
        return "spec"

    shared = asyncio.ensure_future(boot())
    impatient = asyncio.ensure_future(wait_shared(shared))
    patient = asyncio.ensure_future(wait_shared(shared))
    await asyncio.sleep(0.01)
    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert not shared.done()
    release.set()
    assert await patient == "spec" and await shared == "spec"


async def test_wait_shared_says_when_the_task_itself_was_cancelled() -> None:
    shared = asyncio.ensure_future(asyncio.Event().wait())
    waiter = asyncio.ensure_future(wait_shared(shared))
    await asyncio.sleep(0.01)
    shared.cancel()  # its owner closed; the caller did not give up
    with pytest.raises(TaskCancelledError):
        await waiter


async def test_wait_shared_passes_the_task_failure_on() -> None:
    with pytest.raises(Boom):
        await wait_shared(asyncio.ensure_future(fail()))
