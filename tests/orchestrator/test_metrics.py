"""Every service's /metrics over real HTTP after one real run through the in-process stack."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import Stages, orchestrator
from swarmlib import ConfigError, MetricsConfig
from tests.fakes.openai_server import Behaviour
from tests.fakes.replies import FIB_REPLY, REFINED_FIB_REPLY
from tests.orchestrator.test_run_queue import ONE_SLOT, Stream, eventually, held_instance, request
from tests.orchestrator.test_swarm import FIB_TASK, collect, fakes, named, solve_or_refine

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def names(samples: Samples) -> set[str]:
    return {name for name, _ in samples}


async def test_a_run_shows_in_every_services_metrics(stages: Stages, sqlite_url: str) -> None:
    good = solve_or_refine(FIB_REPLY, REFINED_FIB_REPLY)
    async with (
        fakes((Behaviour.ANSWER, good), (Behaviour.ANSWER, good), (Behaviour.HTTP_500, good)) as servers,
        orchestrator(stages, named(servers), sqlite_url, SWARM_REFINE="false") as orch,
    ):
        assert orch.server.metrics is not None and orch.server.metrics.port
        before = await scrape(orch.server.metrics.port)
        assert value(before, "swarm_queue_waiting_runs") == 0
        events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=3))
        assert error is None
        run = events[-1].done
        after = await scrape(orch.server.metrics.port)

    status = pb.RunStatus.Name(run.status).removeprefix("RUN_STATUS_").lower()
    assert value(after, "swarm_runs_total", status=status) == 1
    assert value(after, "swarm_run_duration_seconds_count", status=status) == 1
    for stage in ("gather", "assess", "collate", "gate"):
        assert value(after, "swarm_stage_duration_seconds_count", stage=stage) == 1
    assert ("swarm_stage_duration_seconds_count", frozenset({("stage", "refine")})) in after  # timed while off too
    assert value(after, "swarm_queue_wait_seconds_count") == 1
    answered = {c.instance for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM}
    for instance in answered:
        assert value(after, "swarm_instance_request_duration_seconds_count", instance=instance, outcome="answered") >= 1
        assert value(after, "swarm_instance_time_to_first_token_seconds_count", instance=instance) >= 1
        assert value(after, "swarm_llm_tokens_total", instance=instance, direction="completion") > 0
        assert ("swarm_llm_cost_usd_total", frozenset({("instance", instance)})) in after
    assert value(after, "swarm_instance_errors_total", instance="fake-3", kind="http_error") >= 1
    assert value(after, "swarm_instance_healthy", instance="fake-1") == 1
    assert value(after, "swarm_queue_waiting_runs") == 0 and value(after, "swarm_queue_active_runs") == 0
    assert value(after, "swarm_consensus_total", reached="true" if run.consensus.reached else "false") == 1
    executed = [c for c in run.candidates if c.sandbox_cpu_ms > 0]
    assert executed and value(after, "swarm_sandbox_cpu_seconds_count") == len(executed)
    assert "swarm_budget_remaining_ratio" not in names(after)  # no budget configured: no scope to show
    run_swarm = "/swarm.v1.OrchestratorService/RunSwarm"
    assert value(after, "swarm_grpc_server_handled_total", method=run_swarm, code="OK") == 1
    # Bounded labels: no run id anywhere on the page.
    assert not any(run.id in label for _, labels in after for pair in labels for label in pair)

    assessor = await scrape(stages.metrics_ports["assessor"])
    assert sum(v for (n, _), v in assessor.items() if n == "swarm_sandbox_executions_total") >= 3
    assert "swarm_sandbox_execution_duration_seconds_bucket" in names(assessor)
    assert any(
        n == "swarm_grpc_server_handled_total" and ("method", "/swarm.v1.AssessorService/Assess") in labels
        for n, labels in assessor
    )
    collator = await scrape(stages.metrics_ports["collator"])
    assert any(("method", "/swarm.v1.CollatorService/Collate") in labels for _, labels in collator)
    async with httpx.AsyncClient() as client:  # no RPC yet with refinement off: the family, empty
        page = (await client.get(f"http://127.0.0.1:{stages.metrics_ports['refiner']}/metrics")).text
    assert "# TYPE swarm_grpc_server_handled_total counter" in page


async def test_a_failed_rpc_is_counted_by_its_code(stages: Stages, sqlite_url: str) -> None:
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), sqlite_url) as orch,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await orch.stub.GetRun(pb.GetRunRequest(run_id="r-missing"))
        assert refused.value.code() == grpc.StatusCode.NOT_FOUND
        assert orch.server.metrics is not None and orch.server.metrics.port
        samples = await scrape(orch.server.metrics.port)
    get_run = "/swarm.v1.OrchestratorService/GetRun"
    assert value(samples, "swarm_grpc_server_handled_total", method=get_run, code="NOT_FOUND") == 1


async def test_metrics_off_and_a_wrong_address() -> None:
    assert not MetricsConfig.from_env({"SWARM_METRICS_ADDR": "off"}, "collator").enabled
    assert MetricsConfig.from_env({}, "assessor").address == "127.0.0.1:9453"
    with pytest.raises(ConfigError, match="HOST:PORT"):
        MetricsConfig.from_env({"SWARM_METRICS_ADDR": "9451"}, "refiner")


async def test_a_taken_metrics_port_fails_start_up(stages: Stages, sqlite_url: str) -> None:
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), sqlite_url) as orch,
    ):
        assert orch.server.metrics is not None
        taken = f"127.0.0.1:{orch.server.metrics.port}"
        with pytest.raises(OSError, match="SWARM_METRICS_ADDR"):
            async with orchestrator(stages, named(servers), sqlite_url, SWARM_METRICS_ADDR=taken):
                pass


async def test_every_replica_reports_the_whole_queue(stages: Stages, database_url: str) -> None:
    """Two orchestrators on one database, every run sent to the first: the second, which drives
    none, reports the same waiting and active runs, read from the store at scrape time."""
    async with AsyncExitStack() as stack:
        server, instances = await stack.enter_async_context(held_instance(slots=1))
        first, second = [
            await stack.enter_async_context(orchestrator(stages, instances, database_url, ONE_SLOT)) for _ in range(2)
        ]
        streams = [Stream(first, request(f"run-{i}")) for i in range(3)]
        await asyncio.gather(*(s.until(lambda s: len(s.events) > 0) for s in streams))
        await eventually(lambda: server.in_flight == 1)
        pages = []
        for replica in (first, second):
            assert replica.server.metrics is not None and replica.server.metrics.port
            pages.append(await scrape(replica.server.metrics.port))
        for page in pages:
            assert value(page, "swarm_queue_active_runs") == 1
            assert value(page, "swarm_queue_waiting_runs") == 2
            assert value(page, "swarm_instance_slots_in_use", instance="only") == 1
            assert value(page, "swarm_queue_oldest_wait_seconds") >= 0
        assert server.gate is not None
        server.gate.set()
        await asyncio.gather(*(s.task for s in streams))
        assert second.server.metrics is not None and second.server.metrics.port
        after = await scrape(second.server.metrics.port)
        assert value(after, "swarm_queue_active_runs") == 0 and value(after, "swarm_queue_waiting_runs") == 0
        assert first.server.metrics is not None and first.server.metrics.port
        assert value(await scrape(first.server.metrics.port), "swarm_queue_wait_seconds_count") == 3


async def test_the_budgets_gauge_shows_what_is_left(stages: Stages, sqlite_url: str) -> None:
    priced = '[{"name": "p", "base_url": "URL", "model": "qwen", "price_input_per_mtok": 1000.0}]'
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(
            stages,
            priced.replace("URL", servers[0].base_url),
            sqlite_url,
            SWARM_REFINE="false",
            SWARM_TEST_WRITERS="0",
            SWARM_BUDGET_DAILY_USD="100",
        ) as orch,
    ):
        assert orch.server.metrics is not None and orch.server.metrics.port
        full = await scrape(orch.server.metrics.port)
        events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1))
        assert error is None
        cost = events[-1].done.usage.cost_usd
        after = await scrape(orch.server.metrics.port)
    assert cost > 0
    assert value(after, "swarm_budget_remaining_ratio", scope="caller_day") == pytest.approx(1 - cost / 100)
    assert "swarm_budget_remaining_ratio" not in names(full)  # nobody has spent yet: no ledger to show
