"""A refine-only instance (SWARM_REFINE_INSTANCE): it writes every refinement, answers no task,
is priced into the budget's bound, and a run may not name it; without it refinement stays on the
best answer's instance."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import Stages, orchestrator
from swarm_orchestrator.config import OrchestratorConfig
from swarmlib import ConfigError
from tests.fakes.openai_server import Behaviour, FakeLLMServer
from tests.orchestrator.test_quality_cli import swarm
from tests.orchestrator.test_refinement import FIXED_REPLY, by_round
from tests.orchestrator.test_swarm import FIB_TASK, WRONG_FIB_REPLY, collect

QUIET = {"SWARM_TEST_WRITERS": "0"}


def purposes(server: FakeLLMServer) -> list[str]:
    return [r.headers.get("x-swarm-purpose", "") for r in server.chat_requests]


def entry(name: str, url: str, price: float = 0.0) -> dict[str, object]:
    return {"name": name, "base_url": url, "model": name, "price_input_per_mtok": price, "price_output_per_mtok": price}


async def test_the_refine_instance_refines_and_never_answers(stages: Stages, sqlite_url: str) -> None:
    reply = by_round(WRONG_FIB_REPLY, FIXED_REPLY)
    async with (
        FakeLLMServer(reply=reply) as small_1,
        FakeLLMServer(reply=reply) as small_2,
        FakeLLMServer(reply=reply) as strong,
    ):
        instances = json.dumps(
            [entry("small-1", small_1.base_url), entry("small-2", small_2.base_url), entry("strong", strong.base_url)]
        )
        env = {**QUIET, "SWARM_REFINE_INSTANCE": "strong"}
        async with orchestrator(stages, instances, sqlite_url, env) as orch:
            listed = await orch.stub.ListInstances(pb.ListInstancesRequest())
            assert {s.instance.name: s.refine_only for s in listed.instances} == {
                "small-1": False,
                "small-2": False,
                "strong": True,
            }
            capacity = await orch.stub.GetCapacity(pb.GetCapacityRequest())
            assert sorted(i.instance for i in capacity.instances) == ["small-1", "small-2"]  # answer slots only
            code, out, err = await swarm(orch.target, "instances", key=orch.api_key)
            assert code == 0, err
            assert [line.split()[0] for line in out.splitlines() if line.endswith("refines only")] == ["strong"]
            events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=4))
            assert error is None, error
            run = events[-1].done
            assert {c.instance for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM} == {
                "small-1",
                "small-2",
            }
            assert purposes(strong) == ["refine"]  # every slot of 4 went to the two that answer
            assert "refine" not in purposes(small_1) + purposes(small_2)
            assert run.refinement.kept and run.final.origin == pb.CANDIDATE_ORIGIN_REFINED
            refined = next(c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_REFINED)
            assert refined.instance == "strong" and refined.model == "strong"

            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await orch.stub.RunSwarm(pb.RunSwarmRequest(task=FIB_TASK, instances=["strong"])).read()
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "'strong' only refines" in (refused.value.details() or "")
            assert "['small-1', 'small-2']" in (refused.value.details() or "")


async def test_an_unhealthy_refine_instance_leaves_refinement_to_the_best_answers_own(
    stages: Stages, sqlite_url: str
) -> None:
    reply = by_round(WRONG_FIB_REPLY, FIXED_REPLY)
    async with (
        FakeLLMServer(reply=reply) as small,
        FakeLLMServer(reply=reply, behaviour=Behaviour.HTTP_500) as strong,
    ):
        instances = json.dumps([entry("small", small.base_url), entry("strong", strong.base_url)])
        env = {
            **QUIET,
            "SWARM_REFINE_INSTANCE": "strong",
            "SWARM_UNHEALTHY_AFTER": "1",
            "SWARM_HEALTH_INTERVAL_S": "0.1",
        }
        async with orchestrator(stages, instances, sqlite_url, env) as orch:
            while True:  # the health probes find it failing
                listed = await orch.stub.ListInstances(pb.ListInstancesRequest())
                if not next(s for s in listed.instances if s.instance.name == "strong").healthy:
                    break
                await asyncio.sleep(0.05)
            events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2))
            assert error is None, error
            refined = next(c for c in events[-1].done.candidates if c.origin == pb.CANDIDATE_ORIGIN_REFINED)
            assert refined.instance == "small"


async def test_the_budget_bound_prices_the_refine_instance(stages: Stages, sqlite_url: str) -> None:
    async with FakeLLMServer() as cheap, FakeLLMServer() as dear:
        pair = json.dumps([entry("cheap", cheap.base_url, 1.0), entry("dear", dear.base_url, 50.0)])
        async with orchestrator(stages, pair, sqlite_url, QUIET) as orch:
            answering_only = await orch.stub.EstimateRun(
                pb.EstimateRunRequest(task=FIB_TASK, swarm_size=2, instances=["cheap"])
            )
        env = {**QUIET, "SWARM_REFINE_INSTANCE": "dear"}
        async with orchestrator(stages, pair, sqlite_url, env) as orch:
            with_refiner = await orch.stub.EstimateRun(pb.EstimateRunRequest(task=FIB_TASK, swarm_size=2))
            without = await orch.stub.EstimateRun(pb.EstimateRunRequest(task=FIB_TASK, swarm_size=2, skip_refine=True))
        assert [row.instance for row in with_refiner.instances] == ["cheap"]
        assert with_refiner.upper_bound_usd > answering_only.upper_bound_usd  # the dear refiner's price
        assert with_refiner.expected_cost_usd > answering_only.expected_cost_usd
        assert without.upper_bound_usd < answering_only.upper_bound_usd  # no refinement, no refiner's price
        assert not cheap.chat_requests and not dear.chat_requests


def test_the_refine_instance_must_be_configured_and_not_alone() -> None:
    two = json.dumps([entry("a", "http://h/v1"), entry("b", "http://h/v1")])
    assert OrchestratorConfig.from_env({"SWARM_INSTANCES": two}).refine_instance == ""
    assert OrchestratorConfig.from_env({"SWARM_INSTANCES": two, "SWARM_REFINE_INSTANCE": "b"}).refine_instance == "b"
    with pytest.raises(ConfigError, match=r"SWARM_REFINE_INSTANCE='c' names no configured instance; .*\['a', 'b'\]"):
        OrchestratorConfig.from_env({"SWARM_INSTANCES": two, "SWARM_REFINE_INSTANCE": "c"})
    one = json.dumps([entry("a", "http://h/v1")])
    with pytest.raises(ConfigError, match="is the only instance"):
        OrchestratorConfig.from_env({"SWARM_INSTANCES": one, "SWARM_REFINE_INSTANCE": "a"})
