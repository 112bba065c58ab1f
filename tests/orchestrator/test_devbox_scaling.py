"""The devbox pool growing on queue depth and shrinking when idle, over real channels.

An orchestrator with devbox instances on the fake Runloop API (the real SDK, the fake's tunnels
in front of one fake model server) gets a burst of runs that queues; the scaler grows the pool
one devbox at a time up to SWARM_DEVBOX_MAX, the queue drains, and after SWARM_DEVBOX_SHRINK_IDLE_S
the grown devboxes are drained and shut down. Timings are short real ones; only states are
asserted (what ListInstances says, what the fake Runloop API was asked), never durations.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.fake_runloop import FakeClock, FakeRunloopAPI
from swarm_bench.stack import Orchestrator, Stages, orchestrator
from swarm_orchestrator.config import OrchestratorConfig
from swarm_orchestrator.devbox_manager import DevboxInstances
from swarm_orchestrator.devbox_scaler import Action
from swarm_orchestrator.devbox_scaling import DevboxScaler
from swarm_orchestrator.devboxes import DevboxInstancePool
from swarm_orchestrator.run_queue import RunQueue
from swarm_orchestrator.store import RunStore
from tests.fakes.openai_server import FakeLLMServer
from tests.orchestrator.test_devbox_instances import PORT, devbox_env, tunnel_urls
from tests.orchestrator.test_swarm import FIB_TASK, collect

SCALING = {
    "SWARM_DEVBOX_MIN": "1",
    "SWARM_DEVBOX_MAX": "3",
    "SWARM_DEVBOX_GROW_QUEUE": "1",
    "SWARM_DEVBOX_GROW_AFTER_S": "0",
    "SWARM_DEVBOX_COOLDOWN_S": "0",
    "SWARM_DEVBOX_SHRINK_IDLE_S": "0.3",
    "SWARM_DEVBOX_SCALE_INTERVAL_S": "0.02",
    # One run at a time per devbox, no test writer: the queue's depth is the runs beyond the devboxes.
    "SWARM_INSTANCE_SLOTS": "1",
    "SWARM_TEST_WRITERS": "0",
    "SWARM_QUEUE_POLL_S": "0.02",
    "SWARM_QUEUE_TIMEOUT_S": "120",
    "SWARM_HEALTH_INTERVAL_S": "0.1",
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeRunloopAPI]:
    async with FakeRunloopAPI() as server:
        yield server


@pytest.fixture
async def gated() -> AsyncIterator[FakeLLMServer]:
    """A model server that answers no completion until the test opens its gate."""
    async with FakeLLMServer(gate=asyncio.Event()) as server:
        yield server


async def until(what: str, check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Wait for ``check`` (the timeout only keeps a broken build from hanging the suite)."""
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 (the fakes' counters have no event to wait on)
            await asyncio.sleep(0.01)
    assert check(), what


async def instances(orch: Orchestrator) -> dict[str, pb.InstanceStatus]:
    statuses = (await orch.stub.ListInstances(pb.ListInstancesRequest())).instances
    return {s.instance.name: s for s in statuses}


async def test_a_burst_grows_the_devbox_pool_to_its_maximum_and_idle_devboxes_are_shut_down(
    stages: Stages, sqlite_url: str, fake: FakeRunloopAPI, gated: FakeLLMServer
) -> None:
    fake.serve(PORT, gated.port)
    gate = gated.gate
    assert gate is not None
    async with orchestrator(stages, "", sqlite_url, **devbox_env(fake, 1, "warm"), **SCALING) as orch:
        first = await orch.stub.ListInstances(pb.ListInstancesRequest())
        assert [s.instance.name for s in first.instances] == ["devbox-1", "devbox-2", "devbox-3"]
        await until("devbox-1 ready", lambda: len(tunnel_urls(fake)) == 1)
        assert len(fake.calls("create")) == 1  # only the starting size is provisioned

        request = pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True)
        runs = [asyncio.create_task(collect(orch.stub, request)) for _ in range(5)]
        # One run per devbox is answered at a time: three at once only once the pool has grown.
        await until("three runs answered at once", lambda: gated.in_flight == 3)
        assert len(fake.calls("create")) == 3
        statuses = await instances(orch)
        assert all(statuses[name].healthy for name in ("devbox-1", "devbox-2", "devbox-3"))
        assert {s.instance.base_url for s in statuses.values()} == tunnel_urls(fake)
        await asyncio.sleep(0.2)  # several scaler rounds with runs still waiting: never past the maximum
        assert len(fake.calls("create")) == 3 and gated.peak_in_flight == 3

        gate.set()
        results = await asyncio.gather(*runs)
        assert all(error is None for _, error in results)
        done = [events[-1].done for events, _ in results]
        assert all(run.status == pb.RUN_STATUS_SUCCEEDED for run in done)
        assert any(run.queue_wait_ms > 0 for run in done)
        assert {c.instance for run in done for c in run.candidates} == {"devbox-1", "devbox-2", "devbox-3"}

        # Idle: the grown devboxes are drained and shut down, one at a time, down to the minimum.
        await until("back to the minimum", lambda: sorted(fake.statuses().values()).count("shutdown") == 2)
        statuses = await instances(orch)
        # Whichever went idle first went first: the one left is any of the three.
        left = [name for name, s in statuses.items() if s.healthy]
        assert len(left) == 1 and statuses[left[0]].instance.base_url in tunnel_urls(fake)
        shrunk = [s for name, s in statuses.items() if name not in left]
        assert all("scaler shrank it" in s.last_error and ".invalid" in s.instance.base_url for s in shrunk)
        assert len(fake.calls("create")) == 3  # nothing grows back while nothing waits

        # A run after the shrink is answered by the devbox left in the pool, and none is provisioned.
        events, error = await collect(orch.stub, request)
        assert error is None and events[-1].done.status == pb.RUN_STATUS_SUCCEEDED
        assert [c.instance for c in events[-1].done.candidates] == left
        assert len(fake.calls("create")) == 3

    assert sorted(fake.statuses().values()) == ["shutdown"] * 3


@dataclass
class Parts:
    """The scaler's real neighbours: the manager on the fake Runloop, the pool, the queue on SQLite."""

    devboxes: DevboxInstances
    pool: DevboxInstancePool
    queue: RunQueue
    scaler: DevboxScaler
    clock: FakeClock
    budget: list[bool]  # what the budget hook answers next (True when empty)

    async def join(self) -> str:
        run = pb.Run(id=uuid.uuid4().hex[:16], task="t", status=pb.RUN_STATUS_RUNNING, swarm_size=1, quorum=1)
        await self.queue.join(run, "local", "local/alice", [])
        return run.id


@pytest.fixture
async def parts(sqlite_url: str, fake: FakeRunloopAPI, gated: FakeLLMServer) -> AsyncIterator[Parts]:
    fake.serve(PORT, gated.port)
    env = {**devbox_env(fake, 1, "warm"), **SCALING, "SWARM_DATABASE_URL": sqlite_url, "SWARM_DEVBOX_MAX": "2"}
    env["SWARM_DEVBOX_SHRINK_IDLE_S"] = "60"
    config = OrchestratorConfig.from_env(env)
    clock = FakeClock()
    budget: list[bool] = []

    async def may_grow() -> bool:
        return budget.pop(0) if budget else True

    store = await RunStore.open(sqlite_url)
    async with httpx.AsyncClient() as http:
        devboxes = DevboxInstances(config.devboxes, http, clock=clock)
        pool = DevboxInstancePool((), {}, config.unhealthy_after, devboxes)
        queue = RunQueue(config, pool, store)
        scaler = DevboxScaler(config.devboxes.scaling, devboxes, pool, queue, may_grow=may_grow, clock=clock)
        devboxes.start()
        await devboxes.wait_ready()
        try:
            yield Parts(devboxes, pool, queue, scaler, clock, budget)
        finally:
            await devboxes.aclose()
            await store.close()


async def test_growth_asks_the_budget_and_the_grown_devbox_joins_the_queue_only_once_ready(
    parts: Parts, fake: FakeRunloopAPI
) -> None:
    first = await parts.join()  # takes devbox-1's one slot
    waiting = await parts.join()
    assert (await parts.queue.state()).depth == 1

    parts.budget.append(False)
    decision = await parts.scaler.step()
    assert decision.action is Action.HOLD and "budget" in decision.reason
    assert len(fake.calls("create")) == 1 and parts.pool.serving == ["devbox-1"]

    decision = await parts.scaler.step()  # the budget says yes now
    assert (decision.action, decision.name) == (Action.GROW, "devbox-2")
    assert parts.pool.serving == ["devbox-1"]  # booting: no slot is handed out on it yet
    await parts.devboxes.wait_ready()
    await parts.scaler.step()
    assert parts.pool.serving == ["devbox-1", "devbox-2"]
    state = await parts.queue.state()
    assert state.depth == 0 and state.started[waiting] == ("devbox-2",)
    assert len(fake.calls("create")) == 2
    await parts.queue.leave(first)
    await parts.queue.leave(waiting)


async def test_a_shrunk_devbox_is_drained_before_its_devbox_is_shut_down(parts: Parts, fake: FakeRunloopAPI) -> None:
    run = await parts.join()
    await parts.join()  # waits: the pool grows into devbox-2
    await parts.scaler.step()
    await parts.devboxes.wait_ready()
    await parts.scaler.step()
    for run_id in list((await parts.queue.state()).started):
        await parts.queue.leave(run_id)
    assert run not in (await parts.queue.state()).started

    parts.clock.advance(61.0)
    decision = await parts.scaler.step()
    assert (decision.action, decision.name) == (Action.SHRINK, "devbox-2")
    assert parts.pool.serving == ["devbox-1"]  # no new slot on it from now on
    box = parts.devboxes.slot("devbox-2").devbox_id
    assert box is not None
    async with parts.devboxes.using("devbox-2"):  # a call that was already on its way
        await parts.scaler.step()
        assert fake.statuses()[box] == "running"  # draining: its call goes on
    await parts.scaler.step()
    await parts.devboxes.settle()
    assert fake.statuses()[box] == "shutdown"
    assert not parts.pool.is_healthy("devbox-2")
    await parts.scaler.step()  # nothing waits: it stays parked
    assert parts.pool.serving == ["devbox-1"] and len(fake.calls("create")) == 2
