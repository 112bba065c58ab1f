"""A run that leaves its size to the server: adaptive by default (docs/adaptive.md, "Which sizing
by default"), the complexity rule of Story 4 with ``SWARM_DEFAULT_SIZING=complexity``; over real
channels with a fake instance."""

from __future__ import annotations

import json

import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import Stages, orchestrator
from swarm_cli.render import progress_line
from swarm_orchestrator.config import OrchestratorConfig
from swarm_orchestrator.sizing import auto_swarm_size
from swarm_orchestrator.store import RunStore
from swarmlib import ConfigError
from tests.fakes.openai_server import FakeLLMServer
from tests.orchestrator.older_schema import as_before
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
            assert events[0].accepted.adaptive_start == 3
            assert "adaptive, 3 instances first, up to 7 while not settled (quorum 2)" in str(progress_line(events[0]))
            stored = await orch.stub.GetRun(pb.GetRunRequest(run_id=events[0].accepted.id))
            assert stored.run.adaptive_start == 3 and stored.run.swarm_size == 7
            assert events[-1].done.quorum == 2, "counted on its first round of 3"
            estimate = await orch.stub.EstimateRun(pb.EstimateRunRequest(task=task))
            assert estimate.swarm_size == 7 and estimate.adaptive_start == 3
            fixed = [e async for e in orch.stub.RunSwarm(pb.RunSwarmRequest(task=task, swarm_size=2))]
            assert fixed[0].accepted.swarm_size == 2 and not any(e.HasField("grown") for e in fixed)
        env = {**QUIET, "SWARM_DEFAULT_SIZING": "complexity"}
        async with orchestrator(stages, instances, sqlite_url, env) as orch:
            events = [e async for e in orch.stub.RunSwarm(pb.RunSwarmRequest(task=task, skip_refine=True))]
            assert events[0].accepted.swarm_size == auto_swarm_size(task) and not events[0].accepted.adaptive_start
            assert not any(e.HasField("grown") for e in events)
            adaptive = [e async for e in orch.stub.RunSwarm(pb.RunSwarmRequest(task=task, adaptive=True))]
            assert adaptive[0].accepted.swarm_size == 7, "asking for adaptive still gets it"


def test_an_unknown_default_sizing_is_refused_at_start() -> None:
    env = {"SWARM_INSTANCES": json.dumps([priced("http://127.0.0.1:9/v1")])}
    assert OrchestratorConfig.from_env({**env, "SWARM_DEFAULT_SIZING": "Complexity"}).default_sizing == "complexity"
    with pytest.raises(ConfigError, match="SWARM_DEFAULT_SIZING"):
        OrchestratorConfig.from_env({**env, "SWARM_DEFAULT_SIZING": "fixed"})


async def test_an_older_database_gets_the_adaptive_start_column_and_its_runs_read_as_fixed(database_url: str) -> None:
    store = await RunStore.open(database_url)
    old = pb.Run(id="oldrun000002", task="t", status=pb.RUN_STATUS_RUNNING, swarm_size=3, quorum=2)
    old.created_at.GetCurrentTime()
    await store.create_run(old)
    await store.close()
    await as_before(database_url, "ALTER TABLE runs DROP COLUMN adaptive_start")  # before adaptive runs
    store = await RunStore.open(database_url)
    try:
        run = await store.get_run(old.id, "default")
        assert run.swarm_size == 3 and run.adaptive_start == 0
    finally:
        await store.close()
