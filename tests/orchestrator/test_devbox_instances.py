"""Swarm runs answered by instances on (fake) Runloop devboxes, over real gRPC channels.

The path under test is the whole one: the orchestrator provisions devboxes through the real SDK
against the fake Runloop API, reaches each fake OpenAI server through the fake's tunnel gateway,
hands the tunnel URL to the refiner like any instance's, and shuts every devbox down on stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.fake_runloop import FakeRunloopAPI
from swarm_bench.stack import Stages, instances_json, orchestrator
from swarm_orchestrator.config import OrchestratorConfig
from swarmlib import ConfigError
from tests.fakes.openai_server import FakeLLMServer
from tests.fakes.replies import FIB_REPLY, REFINED_FIB_REPLY
from tests.orchestrator.test_swarm import FIB_TASK, collect, solve_or_refine

PORT = 8080


@pytest.fixture
async def fake() -> AsyncIterator[FakeRunloopAPI]:
    async with FakeRunloopAPI() as server:
        yield server


@pytest.fixture
async def llm(fake: FakeRunloopAPI) -> AsyncIterator[FakeLLMServer]:
    """The model server every devbox runs on ``PORT``."""
    async with FakeLLMServer(reply=solve_or_refine(FIB_REPLY, REFINED_FIB_REPLY)) as server:
        fake.serve(PORT, server.port)
        yield server


def devbox_env(fake: FakeRunloopAPI, count: int, mode: str) -> dict[str, str]:
    return {
        "SWARM_DEVBOX_INSTANCES": str(count),
        "SWARM_DEVBOX_MODE": mode,
        "SWARM_DEVBOX_BLUEPRINT": "qwen-llama-server",
        "SWARM_DEVBOX_PORT": str(PORT),
        "SWARM_DEVBOX_MODEL": "qwen",
        "SWARM_DEVBOX_TUNNEL_URL": fake.tunnel_url,
        "SWARM_DEVBOX_PROBE_INTERVAL_S": "0.01",
        "RUNLOOP_API_KEY": fake.api_key,
        "RUNLOOP_BASE_URL": fake.base_url,
        "SWARM_RUNLOOP_MAX_RETRIES": "1",
    }


def tunnel_urls(fake: FakeRunloopAPI) -> set[str]:
    return {
        fake.tunnel_url.format(port=PORT, tunnel_key=box.tunnel["tunnel_key"]) + "/v1"
        for box in fake.devboxes.values()
        if box.tunnel is not None
    }


async def test_warm_devbox_instances_answer_a_run_and_are_shut_down_on_stop(
    stages: Stages, sqlite_url: str, fake: FakeRunloopAPI, llm: FakeLLMServer
) -> None:
    async with orchestrator(stages, "", sqlite_url, **devbox_env(fake, 2, "warm")) as orch:
        # Warm: provisioned at start-up, with no run asking; healthy once the tunnel answers.
        while True:
            statuses = (await orch.stub.ListInstances(pb.ListInstancesRequest())).instances
            if all(s.healthy for s in statuses):
                break
            await asyncio.sleep(0.01)
        assert sorted(s.instance.name for s in statuses) == ["devbox-1", "devbox-2"]
        assert {s.instance.base_url for s in statuses} == tunnel_urls(fake)
        assert {s.instance.model for s in statuses} == {"qwen"}

        events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2))
        assert error is None
        run = events[-1].done
        assert run.status == pb.RUN_STATUS_SUCCEEDED and "def fib" in run.final.code
        swarm = [c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM]
        assert sorted(c.instance for c in swarm) == ["devbox-1", "devbox-2"]
        assert run.refinement.reason

        # Every completion (solve, tests, refine from the refiner service) went through a tunnel.
        relayed = [r for r in fake.calls("tunnel") if r.path.endswith("/v1/chat/completions")]
        assert len(relayed) == len(llm.chat_requests) >= 3 and all(r.status == 200 for r in relayed)
        assert {r.headers["x-swarm-run-id"] for r in llm.chat_requests} == {run.id}
        assert len(fake.calls("create")) == 2

    assert sorted(fake.statuses().values()) == ["shutdown", "shutdown"]


async def test_per_run_devbox_is_provisioned_by_the_first_run_beside_a_static_instance(
    stages: Stages, sqlite_url: str, fake: FakeRunloopAPI, llm: FakeLLMServer
) -> None:
    async with (
        FakeLLMServer(reply=solve_or_refine(FIB_REPLY, REFINED_FIB_REPLY)) as static,
        orchestrator(
            stages, instances_json([("fake-1", static.base_url)]), sqlite_url, **devbox_env(fake, 1, "per-run")
        ) as orch,
    ):
        assert fake.calls("create") == []  # per-run: nothing until a run needs it
        events, error = await collect(
            orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, instances=["fake-1", "devbox-1"])
        )
        assert error is None
        run = events[-1].done
        assert run.status == pb.RUN_STATUS_SUCCEEDED
        swarm = [c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM]
        assert sorted(c.instance for c in swarm) == ["devbox-1", "fake-1"]
        assert len(fake.calls("create")) == 1
        assert any(r.headers["x-swarm-purpose"] == "solve" for r in llm.chat_requests)
        statuses = {s.instance.name: s for s in (await orch.stub.ListInstances(pb.ListInstancesRequest())).instances}
        assert statuses["devbox-1"].healthy and statuses["devbox-1"].instance.base_url in tunnel_urls(fake)
        assert statuses["fake-1"].instance.base_url == static.base_url

    assert list(fake.statuses().values()) == ["shutdown"]


def test_orchestrator_config_takes_devboxes_instead_of_or_beside_static_instances() -> None:
    base = {"SWARM_DATABASE_URL": "sqlite+aiosqlite:///x.db"}
    devboxes = {"SWARM_DEVBOX_INSTANCES": "2", "SWARM_DEVBOX_BLUEPRINT": "bpt_qwen", "RUNLOOP_API_KEY": "rl_k_93ad"}
    only = OrchestratorConfig.from_env({**base, **devboxes})
    assert only.instances == () and only.devboxes.names == ["devbox-1", "devbox-2"]
    assert "rl_k_93ad" not in repr(only)
    static = '[{"name": "a", "base_url": "http://127.0.0.1:1/v1", "model": "qwen"}]'
    both = OrchestratorConfig.from_env({**base, **devboxes, "SWARM_INSTANCES": static})
    assert [s.name for s in both.instances] == ["a"] and both.devboxes.count == 2
    assert OrchestratorConfig.from_env({**base, "SWARM_INSTANCES": static}).devboxes.count == 0

    with pytest.raises(ConfigError, match="RUNLOOP_API_KEY"):
        OrchestratorConfig.from_env({**base, **devboxes, "RUNLOOP_API_KEY": ""})
    with pytest.raises(ConfigError, match="SWARM_DEVBOX_INSTANCES='x' is not an integer"):
        OrchestratorConfig.from_env({**base, **devboxes, "SWARM_DEVBOX_INSTANCES": "x"})
    with pytest.raises(ConfigError, match="no instances configured"):
        OrchestratorConfig.from_env(base)
