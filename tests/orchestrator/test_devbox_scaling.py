"""The devbox pool growing on queue depth and shrinking when idle, over real channels.

An orchestrator with devbox instances on the fake Runloop API (the real SDK, the fake's tunnels
in front of one fake model server) gets a burst of runs that queues; the scaler grows the pool
one devbox at a time up to SWARM_DEVBOX_MAX, the queue drains, and after SWARM_DEVBOX_SHRINK_IDLE_S
the grown devboxes are drained and shut down. Timings are short real ones; only states are
asserted (what ListInstances says, what the fake Runloop API was asked), never durations.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.fake_runloop import FakeRunloopAPI
from swarm_bench.stack import Orchestrator, Stages, orchestrator
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
        assert statuses["devbox-1"].healthy and statuses["devbox-1"].instance.base_url in tunnel_urls(fake)
        for name in ("devbox-2", "devbox-3"):
            assert not statuses[name].healthy and "scaler shrank it" in statuses[name].last_error
        assert len(fake.calls("create")) == 3  # nothing grows back while nothing waits

        # A run after the shrink is answered by the devbox left in the pool, and none is provisioned.
        events, error = await collect(orch.stub, request)
        assert error is None and events[-1].done.status == pb.RUN_STATUS_SUCCEEDED
        assert [c.instance for c in events[-1].done.candidates] == ["devbox-1"]
        assert len(fake.calls("create")) == 3

    assert sorted(fake.statuses().values()) == ["shutdown"] * 3
