"""A run that leaves its size to the server: adaptive by default (docs/adaptive.md, "Which sizing
by default"), the complexity rule of Story 4 with ``SWARM_DEFAULT_SIZING=complexity``; over real
channels with a fake instance."""

from __future__ import annotations

import json

import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import Stages, orchestrator
from swarm_orchestrator.config import OrchestratorConfig
from swarm_orchestrator.sizing import auto_swarm_size
from swarmlib import ConfigError
from tests.fakes.openai_server import FakeLLMServer
from tests.orchestrator.test_budget import QUIET, TASK, priced


async def test_a_run_of_size_zero_is_adaptive_unless_the_server_says_complexity(
    stages: Stages, sqlite_url: str
) -> None:
    task = TASK.format(tag="default sizing")
    async with FakeLLMServer() as server:
        instances = json.dumps([priced(server.base_url)])
        async with orchestrator(stages, instances, sqlite_url, QUIET) as orch:
            events = [e async for e in orch.stub.RunSwarm(pb.RunSwarmRequest(task=task, skip_refine=True))]
            assert events[0].accepted.swarm_size == 7, "an adaptive run holds its limit"
            assert events[-1].done.quorum == 2, "counted on its first round of 3"
            estimate = await orch.stub.EstimateRun(pb.EstimateRunRequest(task=task))
            assert estimate.swarm_size == 7 and estimate.adaptive_start == 3
            fixed = [e async for e in orch.stub.RunSwarm(pb.RunSwarmRequest(task=task, swarm_size=2))]
            assert fixed[0].accepted.swarm_size == 2 and not any(e.HasField("grown") for e in fixed)
        env = {**QUIET, "SWARM_DEFAULT_SIZING": "complexity"}
        async with orchestrator(stages, instances, sqlite_url, env) as orch:
            events = [e async for e in orch.stub.RunSwarm(pb.RunSwarmRequest(task=task, skip_refine=True))]
            assert events[0].accepted.swarm_size == auto_swarm_size(task)
            assert not any(e.HasField("grown") for e in events)
            adaptive = [e async for e in orch.stub.RunSwarm(pb.RunSwarmRequest(task=task, adaptive=True))]
            assert adaptive[0].accepted.swarm_size == 7, "asking for adaptive still gets it"


def test_an_unknown_default_sizing_is_refused_at_start() -> None:
    env = {"SWARM_INSTANCES": json.dumps([priced("http://127.0.0.1:9/v1")])}
    assert OrchestratorConfig.from_env({**env, "SWARM_DEFAULT_SIZING": "Complexity"}).default_sizing == "complexity"
    with pytest.raises(ConfigError, match="SWARM_DEFAULT_SIZING"):
        OrchestratorConfig.from_env({**env, "SWARM_DEFAULT_SIZING": "fixed"})
