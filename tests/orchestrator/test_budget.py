"""Budgets over real channels with priced fake instances: 50 runs at once against a budget that
fits five never spend more than it, the refused ones are refused before any instance is called,
the ones that fit are answered; the same across two orchestrator processes sharing PostgreSQL; per-run
limits refuse or shrink; EstimateRun counts with the instance's tokenizer and prices an adaptive
run at its limit and its first round; the run's usage counts test writing and settles the
reservation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import grpc
import pytest

from swarm.v1 import common_pb2, orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarm_bench.stack import Orchestrator, Stages, orchestrator
from swarm_orchestrator.cost import RunShape, upper_bound_usd
from swarm_orchestrator.lease import Leases
from swarm_orchestrator.store import RunStore
from swarm_orchestrator.store_leases import LeaseTerms
from swarmlib import InstanceSpec
from tests.fakes.openai_server import FakeLLMServer
from tests.orchestrator.test_quality_cli import swarm
from tests.orchestrator.test_run_queue import Stream
from tests.test_shutdown import free_port, health_stub, launched, orchestrator_channel, service_env, wait_serving

TASK = "Write a Python function fib(n) that returns the n-th Fibonacci number. ({tag})"
PRICE_IN, PRICE_OUT = 1000.0, 2000.0  # USD per million tokens: a cent or so a run
MAX_TOKENS = 256
QUIET = {
    "SWARM_TEST_WRITERS": "0",
    "SWARM_REFINE": "false",
    "SWARM_QUEUE_POLL_S": "0.05",
    "SWARM_MAX_TOKENS": str(MAX_TOKENS),
}
ANSWERED = (pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_NEEDS_APPROVAL)


def priced(url: str, name: str = "priced", slots: int = 16) -> dict[str, object]:
    return {
        "name": name,
        "base_url": url,
        "model": "qwen",
        "slots": slots,
        "price_input_per_mtok": PRICE_IN,
        "price_output_per_mtok": PRICE_OUT,
    }


def bound(task: str, slots: int = 1, writers: int = 0, rounds: int = 0) -> float:
    spec = InstanceSpec(name="x", base_url="", model="", price_input_per_mtok=PRICE_IN, price_output_per_mtok=PRICE_OUT)
    return upper_bound_usd(RunShape(task, slots, writers, rounds, MAX_TOKENS), [spec])


async def settle_all(streams: list[Stream]) -> None:
    await asyncio.gather(*(s.task for s in streams))


async def resolved(server: FakeLLMServer, streams: list[Stream], fits: int) -> None:
    """Until every call was refused or has its instance request waiting at the held instance."""
    while not (sum(s.error is not None for s in streams) == len(streams) - fits and server.in_flight == fits):  # noqa: ASYNC110
        await asyncio.sleep(0.02)


async def spend(orch: Orchestrator) -> pb.BudgetUse:
    response: pb.GetBudgetResponse = await orch.stub.GetBudget(pb.GetBudgetRequest())
    return next(b for b in response.budgets if b.scope == "caller" and b.period == "day")


def check_outcome(streams: list[Stream], fits: int) -> None:
    refused = [s for s in streams if s.error is not None]
    assert len(refused) == len(streams) - fits
    for stream in refused:
        assert stream.error is not None and stream.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        details = stream.error.details() or ""
        assert "daily budget" in details and "Nothing was called or stored" in details, details
        assert not stream.events, "a refused run was accepted"
    answered = [s for s in streams if s.error is None]
    assert len(answered) == fits
    for stream in answered:
        assert stream.events[-1].HasField("done") and stream.events[-1].done.status in ANSWERED


@asynccontextmanager
async def held() -> AsyncIterator[tuple[FakeLLMServer, asyncio.Event]]:
    gate = asyncio.Event()
    async with FakeLLMServer(gate=gate) as server:
        try:
            yield server, gate
        finally:
            gate.set()


async def test_fifty_runs_at_once_never_overspend_the_budget(stages: Stages, database_url: str) -> None:
    fits = 5
    budget = bound(TASK.format(tag=0)) * (fits + 0.5)
    async with held() as (server, gate):
        instances = json.dumps([priced(server.base_url)])
        env = {**QUIET, "SWARM_BUDGET_DAILY_USD": repr(budget)}
        async with orchestrator(stages, instances, database_url, env) as orch:
            streams = [Stream(orch, pb.RunSwarmRequest(task=TASK.format(tag=i), swarm_size=1)) for i in range(50)]
            await asyncio.wait_for(resolved(server, streams, fits), 60)
            held_now = await spend(orch)
            assert held_now.reserved_usd <= budget
            gate.set()
            await settle_all(streams)
            check_outcome(streams, fits)
            assert len(server.chat_requests) == fits  # the refused runs called no instance
            used = await spend(orch)
            assert used.reserved_usd == 0
            assert 0 < used.spent_usd <= budget
            listed = await orch.stub.ListRuns(pb.ListRunsRequest(page_size=100))
            assert len(listed.runs) == fits  # and were never stored


async def test_a_run_over_its_own_limit_is_refused_or_shrunk(stages: Stages, sqlite_url: str) -> None:
    task = TASK.format(tag="limit")
    async with FakeLLMServer() as server:
        instances = json.dumps([priced(server.base_url)])
        async with orchestrator(stages, instances, sqlite_url, QUIET) as orch:
            limit = bound(task, slots=1) * 1.5
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in orch.stub.RunSwarm(pb.RunSwarmRequest(task=task, swarm_size=3, max_cost_usd=limit)):
                    pass
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_cost_usd" in (refused.value.details() or "")
            assert not server.chat_requests
            shrunk = pb.RunSwarmRequest(task=task, swarm_size=3, max_cost_usd=limit, allow_shrink=True)
            events = [e async for e in orch.stub.RunSwarm(shrunk)]
            assert events[0].accepted.swarm_size == 1
            assert events[-1].done.status in ANSWERED
            assert len(server.chat_requests) == 1
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await orch.stub.EstimateRun(pb.EstimateRunRequest(task=""))
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_estimate_counts_with_the_tokenizer_and_learns_from_history(stages: Stages, sqlite_url: str) -> None:
    task = TASK.format(tag="estimate")
    async with FakeLLMServer(tokenizer=True) as counting, FakeLLMServer() as plain:
        instances = json.dumps([priced(counting.base_url, "counting"), priced(plain.base_url, "plain")])
        async with orchestrator(stages, instances, sqlite_url, QUIET) as orch:
            first = await orch.stub.EstimateRun(pb.EstimateRunRequest(task=task, swarm_size=2))
            rows = {row.instance: row for row in first.instances}
            assert rows["counting"].input_tokens_source == "tokenizer"
            assert rows["plain"].input_tokens_source == "chars/4"
            assert rows["counting"].input_tokens < rows["plain"].input_tokens  # words, not chars/4
            assert rows["plain"].output_tokens_source == "prior (max_tokens/2)"
            assert rows["plain"].expected_output_tokens == MAX_TOKENS / 2
            assert 0 < first.expected_cost_usd <= first.upper_bound_usd
            assert first.remaining_daily_usd == -1  # no budget configured
            assert not counting.chat_requests and not plain.chat_requests  # no model was called
            async for _ in orch.stub.RunSwarm(pb.RunSwarmRequest(task=task, swarm_size=2)):
                pass
            after = await orch.stub.EstimateRun(pb.EstimateRunRequest(task=task, swarm_size=2))
            learned = {row.instance: row for row in after.instances}["plain"]
            assert learned.output_tokens_source == "history (2 answers)"
            assert learned.expected_output_tokens < MAX_TOKENS / 2


async def test_an_adaptive_estimate_prices_its_limit_and_its_first_round(stages: Stages, sqlite_url: str) -> None:
    task = TASK.format(tag="adaptive estimate")
    async with FakeLLMServer(tokenizer=True) as server:
        instances = json.dumps([priced(server.base_url)])
        async with orchestrator(stages, instances, sqlite_url, QUIET) as orch:
            fixed = await orch.stub.EstimateRun(pb.EstimateRunRequest(task=task, swarm_size=5))
            counted = len([r for r in server.requests if r.path.endswith("/tokenize")])
            adaptive = await orch.stub.EstimateRun(pb.EstimateRunRequest(task=task, swarm_size=5, adaptive=True))
            # Both sizes are priced from one count: the instance's tokenizer is asked once per estimate.
            assert len([r for r in server.requests if r.path.endswith("/tokenize")]) == 2 * counted == 2
            assert fixed.adaptive_start == 0 and fixed.first_round_cost_usd == 0
            assert adaptive.swarm_size == 5 and adaptive.adaptive_start == 3
            assert adaptive.upper_bound_usd == pytest.approx(fixed.upper_bound_usd)  # what the budget reserves
            assert adaptive.expected_cost_usd == pytest.approx(fixed.expected_cost_usd)
            assert 0 < adaptive.first_round_cost_usd < adaptive.expected_cost_usd
            with pytest.raises(grpc.aio.AioRpcError) as bad:
                await orch.stub.EstimateRun(pb.EstimateRunRequest(task=task, tests=["assert fib(3) == 2", "fib(3)"]))
            assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "tests[1]" in (bad.value.details() or "")
            assert not server.chat_requests


async def test_run_usage_counts_test_writing_and_settles_the_reservation(stages: Stages, sqlite_url: str) -> None:
    task = TASK.format(tag="writers")
    async with FakeLLMServer() as server:
        instances = json.dumps([priced(server.base_url)])
        env = {**QUIET, "SWARM_TEST_WRITERS": "1", "SWARM_BUDGET_DAILY_USD": "100"}
        async with orchestrator(stages, instances, sqlite_url, env) as orch:
            events = [e async for e in orch.stub.RunSwarm(pb.RunSwarmRequest(task=task, swarm_size=2))]
            run = events[-1].done
            assert any(r.headers.get("x-swarm-purpose") == "tests" for r in server.chat_requests)
            answers = sum(c.usage.prompt_tokens for c in run.candidates)
            assert run.usage.prompt_tokens > answers  # the test writer's prompt is counted
            assert run.usage.cost_usd > sum(c.usage.cost_usd for c in run.candidates)
            used = await spend(orch)
            assert used.spent_usd == pytest.approx(run.usage.cost_usd)
            assert used.reserved_usd == 0 and used.limit_usd == 100


async def test_cli_estimates_without_running_and_shows_the_budget(stages: Stages, sqlite_url: str) -> None:
    async with FakeLLMServer(tokenizer=True) as server:
        instances = json.dumps([priced(server.base_url)])
        env = {**QUIET, "SWARM_BUDGET_DAILY_USD": "2", "SWARM_BUDGET_MONTHLY_USD": "30"}
        async with orchestrator(stages, instances, sqlite_url, env) as orch:
            code, out, err = await swarm(orch.target, "run", "--estimate", "--size", "2", TASK, key=orch.api_key)
            assert code == 0, err
            assert "upper bound:" in out and "(tokenizer)" in out and "today $2.000000" in out
            code, out, err = await swarm(orch.target, "run", "--estimate", "--adaptive", TASK, key=orch.api_key)
            assert code == 0, err
            assert "if the first 3 answers settle it; the lines above are for all 7" in out
            assert not server.chat_requests
            code, out, err = await swarm(orch.target, "budget", key=orch.api_key)
            assert code == 0, err
            assert "local/local" in out
            assert "of $2.000000" in out and "of $30.000000" in out


class Call:
    """One RunSwarm call to a launched orchestrator, read in the background."""

    def __init__(self, stub: orchestrator_pb2_grpc.OrchestratorServiceStub, request: pb.RunSwarmRequest) -> None:
        self.events: list[pb.RunSwarmResponse] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.task = asyncio.create_task(self._read(stub.RunSwarm(request, timeout=120.0)))

    async def _read(self, call: AsyncIterator[pb.RunSwarmResponse]) -> None:
        try:
            async for event in call:
                self.events.append(event)
        except grpc.aio.AioRpcError as exc:
            self.error = exc


@pytest.mark.postgres
async def test_two_orchestrator_processes_sharing_postgresql_never_overspend(
    stages: Stages, postgres_url: str, tmp_path: Path
) -> None:
    fits = 4
    budget = bound(TASK.format(tag=0)) * (fits + 0.5)
    async with held() as (server, gate), AsyncExitStack() as stack:
        ports = []
        for name in ("a", "b"):
            port = free_port()
            env = service_env("orchestrator", port, tmp_path)  # one keys file: one caller on both
            env.update(
                QUIET,
                SWARM_INSTANCES=json.dumps([priced(server.base_url)]),
                SWARM_DATABASE_URL=postgres_url,
                SWARM_BUDGET_DAILY_USD=repr(budget),
                SWARM_COLLATOR_TARGET=stages.collator,
                SWARM_ASSESSOR_TARGET=stages.assessor,
                SWARM_REFINER_TARGET=stages.refiner,
            )
            proc = stack.enter_context(launched("orchestrator", env, tmp_path / f"{name}.log"))
            async with health_stub(port) as health:
                await wait_serving(proc, health, tmp_path / f"{name}.log", 60.0)
            ports.append(port)
        channels = [orchestrator_channel(port, tmp_path) for port in ports]
        for channel in channels:
            stack.push_async_callback(channel.close)
        stubs = [orchestrator_pb2_grpc.OrchestratorServiceStub(channel) for channel in channels]
        calls = [Call(stubs[i % 2], pb.RunSwarmRequest(task=TASK.format(tag=i), swarm_size=1)) for i in range(50)]

        async def resolved_calls() -> None:
            while not (sum(c.error is not None for c in calls) == 50 - fits and server.in_flight == fits):  # noqa: ASYNC110
                await asyncio.sleep(0.02)

        await asyncio.wait_for(resolved_calls(), 90)
        gate.set()
        await asyncio.gather(*(c.task for c in calls))
        refused = [c for c in calls if c.error is not None]
        assert all(c.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and not c.events for c in refused if c.error)
        answered = [c for c in calls if c.error is None]
        assert len(answered) == fits and all(c.events[-1].done.status in ANSWERED for c in answered)
        assert len(server.chat_requests) == fits
        response: pb.GetBudgetResponse = await stubs[0].GetBudget(pb.GetBudgetRequest())
        day = next(b for b in response.budgets if b.scope == "caller" and b.period == "day")
        assert day.reserved_usd == 0 and 0 < day.spent_usd <= budget


async def test_a_dead_orchestrators_reservation_is_settled_by_the_sweep(database_url: str) -> None:
    """Its run's lease runs out: the sweep ends the run and settles its reservation to what it stored."""
    store = await RunStore.open(database_url, lease=LeaseTerms(ttl_s=0.2))
    try:
        run = pb.Run(id="deadrun1", task="t", status=pb.RUN_STATUS_RUNNING, swarm_size=2, quorum=1)
        run.created_at.GetCurrentTime()
        await store.budget.reserve(run.id, "local/ann", "local", lambda ledger: 5.0)
        await store.budget.reserve("neverstored", "local/ann", "local", lambda ledger: 7.0)
        await store.create_run(run, "local")
        answer = pb.Candidate(id="c1", usage=common_pb2.Usage(prompt_tokens=10, completion_tokens=5, cost_usd=0.25))
        await store.add_candidate(run.id, answer)
        assert (await store.budget.ledger("local/ann", "local")).caller_day.reserved_usd == 12.0
        await asyncio.sleep(0.3)
        swept = await Leases(store, lambda: ()).sweep()
        assert swept == [run.id]
        day = (await store.budget.ledger("local/ann", "local")).caller_day
        # The run stored 0.25 of spend; the reservation never stored stays held within its grace.
        assert day.spent_usd == pytest.approx(0.25) and day.reserved_usd == 7.0
    finally:
        await store.close()
