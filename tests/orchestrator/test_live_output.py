"""The batcher of one attempt's text (``live_output``) on a hand-moved clock, and its setting."""

from __future__ import annotations

import asyncio

import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_orchestrator.config import OrchestratorConfig
from swarm_orchestrator.live_output import AttemptOutput, Batch, watch
from swarmlib import ConfigError, LLMTimeoutError

INSTANCES = '[{"name": "a", "base_url": "http://a.test/v1", "model": "m"}]'


class Clock:
    """A clock the test moves, and a sleep that returns only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._wake = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self._wake.clear()
        await self._wake.wait()

    async def advance(self, seconds: float) -> None:
        """Move on and let a waiting timer run."""
        self.now += seconds
        self._wake.set()
        for _ in range(5):
            await asyncio.sleep(0)


class Events:
    def __init__(self) -> None:
        self.outputs: list[pb.InstanceOutput] = []

    async def __call__(self, event: pb.RunSwarmResponse) -> None:
        self.outputs.append(event.instance_output)

    @property
    def deltas(self) -> list[str]:
        return [o.delta for o in self.outputs]


def test_batch_sends_the_first_text_at_once_then_once_an_interval() -> None:
    batch = Batch(0.1)
    assert batch.take(0.0) is None and batch.wait_s(0.0) == 0.0
    batch.add("def ")
    assert batch.wait_s(0.0) == 0.0
    assert batch.take(0.0) == ("def ", 4)
    batch.add("fib")
    batch.add("(n):")
    assert batch.wait_s(0.04) == pytest.approx(0.06)
    assert batch.wait_s(0.25) == 0.0
    assert batch.take(0.25) == ("fib(n):", 11)  # the length counts the whole attempt so far
    assert batch.wait_s(0.3) == pytest.approx(0.05)


async def test_text_faster_than_the_interval_leaves_in_one_batch_per_interval() -> None:
    clock, events = Clock(), Events()
    output = AttemptOutput(events, 2, "qwen-1", 1, 0.1, clock=clock, sleep=clock.sleep)
    await output.add("def ")
    assert events.deltas == ["def "]  # the first text at once: the viewer sees the instance writing
    for piece in ("fib", "(n)", ":"):
        clock.now += 0.01
        await output.add(piece)
    await asyncio.sleep(0)
    assert events.deltas == ["def "] and clock.sleeps == [pytest.approx(0.09)]
    await clock.advance(0.09)
    assert events.deltas == ["def ", "fib(n):"]
    assert [(o.slot, o.instance, o.attempt, o.length) for o in events.outputs] == [
        (2, "qwen-1", 1, 4),
        (2, "qwen-1", 1, 11),
    ]


async def test_a_paused_instance_does_not_hold_back_text_it_sent() -> None:
    clock, events = Clock(), Events()
    output = AttemptOutput(events, 0, "a", 1, 0.1, clock=clock, sleep=clock.sleep)
    await output.add("x")
    clock.now += 0.02
    await output.add(" = ")
    await asyncio.sleep(0)
    await clock.advance(0.08)  # no further text arrives, yet the batch goes when its time comes
    assert events.deltas == ["x", " = "]


async def test_close_sends_what_is_pending_and_stops_the_timer() -> None:
    clock, events = Clock(), Events()
    output = AttemptOutput(events, 0, "a", 1, 0.1, clock=clock, sleep=clock.sleep)
    await output.add("x")
    await output.add(" = 1")
    await asyncio.sleep(0)
    await output.close()
    assert events.deltas == ["x", " = 1"]
    await clock.advance(1.0)
    await output.close()
    assert events.deltas == ["x", " = 1"]  # nothing after the attempt ended, nothing twice


async def test_watch_sends_the_rest_before_an_error_leaves_it() -> None:
    events = Events()
    with pytest.raises(LLMTimeoutError):
        async with watch(events, 1, "a", 2, 10.0) as on_text:
            assert on_text is not None
            await on_text("def ")
            await on_text("fib")
            raise LLMTimeoutError("a: no complete answer")
    assert events.deltas == ["def ", "fib"] and {o.attempt for o in events.outputs} == {2}


async def test_watch_gives_no_callback_when_the_run_did_not_ask_for_text() -> None:
    async with watch(Events(), 0, "a", 1, None) as on_text:
        assert on_text is None


async def test_a_cancelled_attempt_sends_nothing_more() -> None:
    events = Events()
    with pytest.raises(asyncio.CancelledError):
        async with watch(events, 0, "a", 1, 10.0) as on_text:
            assert on_text is not None
            await on_text("x")
            await on_text(" = 1")
            raise asyncio.CancelledError
    assert events.deltas == ["x"]


def test_output_batch_setting_is_checked_at_start_up() -> None:
    base = {"SWARM_INSTANCES": INSTANCES}
    assert OrchestratorConfig.from_env(base).output_batch_ms == 100
    assert OrchestratorConfig.from_env({**base, "SWARM_OUTPUT_BATCH_MS": "250"}).output_batch_ms == 250
    with pytest.raises(ConfigError, match="SWARM_OUTPUT_BATCH_MS=5 must be >= 10"):
        OrchestratorConfig.from_env({**base, "SWARM_OUTPUT_BATCH_MS": "5"})
    with pytest.raises(ConfigError, match="SWARM_OUTPUT_BATCH_MS=60000 must be at most 10000"):
        OrchestratorConfig.from_env({**base, "SWARM_OUTPUT_BATCH_MS": "60000"})
    with pytest.raises(ConfigError, match="SWARM_OUTPUT_BATCH_MS='fast' is not an integer"):
        OrchestratorConfig.from_env({**base, "SWARM_OUTPUT_BATCH_MS": "fast"})
