"""The run queue at the door over real channels: a run beyond capacity waits and sees its place,
beyond the queue's size it is refused before anything is stored, it gives up after its deadline
saying why, callers take turns, a client that leaves does not lose its run, and replicas sharing
PostgreSQL never give an instance more requests than its slots."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager

import grpc
import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import Orchestrator, Stages, orchestrator
from tests.fakes.openai_server import FakeLLMServer
from tests.orchestrator.keys import as_key
from tests.orchestrator.test_quality_cli import swarm

TASK = "Write a Python function fib(n) that returns the n-th Fibonacci number. ({tag})"
# One instance of one slot, one answer per run and no test writer: one run at a time. A held
# answer must outlast the slowest test step (a CLI subprocess takes seconds to start).
ONE_SLOT = {
    "SWARM_TEST_WRITERS": "0",
    "SWARM_REFINE": "false",
    "SWARM_QUEUE_POLL_S": "0.05",
    "SWARM_INSTANCE_TIMEOUT_S": "120",
}


def one_instance(url: str, slots: int) -> str:
    return f'[{{"name": "only", "base_url": "{url}", "model": "qwen", "slots": {slots}}}]'


def request(tag: str) -> pb.RunSwarmRequest:
    return pb.RunSwarmRequest(task=TASK.format(tag=tag), swarm_size=1)


class Stream:
    """One RunSwarm call read in the background: its events as they come, and how it ended."""

    def __init__(self, orch: Orchestrator, req: pb.RunSwarmRequest, user: str = "") -> None:
        """``user``: a caller with a member key of its own (else the stack's local approver)."""
        self.events: list[pb.RunSwarmResponse] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.call = orch.stub.RunSwarm(req, metadata=as_key(orch, user) if user else ())
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for event in self.call:
                self.events.append(event)
        except grpc.aio.AioRpcError as exc:
            self.error = exc

    def kinds(self) -> list[str]:
        return [str(event.WhichOneof("event")) for event in self.events]

    def queued(self) -> list[pb.RunQueued]:
        return [event.queued for event in self.events if event.HasField("queued")]

    @property
    def run_id(self) -> str:
        return self.events[0].run_id

    async def until(self, check: Callable[[Stream], bool]) -> None:
        while not check(self):
            assert not self.task.done(), f"stream ended early: {self.kinds()} {self.error}"
            await asyncio.sleep(0.01)


async def eventually(check: Callable[[], bool]) -> None:
    while not check():  # noqa: ASYNC110 (the fake server's counters have no event to wait on)
        await asyncio.sleep(0.01)


@asynccontextmanager
async def held_instance(slots: int = 1) -> AsyncIterator[tuple[FakeLLMServer, str]]:
    """An instance whose answers wait until its gate opens."""
    gate = asyncio.Event()
    async with FakeLLMServer(gate=gate) as server:
        try:
            yield server, one_instance(server.base_url, slots)
        finally:
            gate.set()  # a test that failed early must not leave its runs waiting


async def test_a_run_beyond_capacity_waits_and_sees_its_place(stages: Stages, database_url: str) -> None:
    async with held_instance() as (server, instances), orchestrator(stages, instances, database_url, ONE_SLOT) as orch:
        first = Stream(orch, request("first"))
        await eventually(lambda: server.in_flight == 1)
        second = Stream(orch, request("second"))
        await second.until(lambda s: bool(s.queued()))
        assert second.kinds()[:2] == ["accepted", "queued"]
        place = second.queued()[0]
        assert (place.position, place.depth) == (1, 1)
        assert place.timeout_ms == 600_000
        capacity = await orch.stub.GetCapacity(pb.GetCapacityRequest())
        assert (capacity.active_runs, capacity.queued_runs, capacity.max_active_runs) == (1, 1, 8)
        assert [(i.instance, i.slots, i.in_use) for i in capacity.instances] == [("only", 1, 1)]

        assert server.gate is not None
        server.gate.set()
        await asyncio.gather(first.task, second.task)
        assert first.error is None and second.error is None
        assert server.peak_in_flight == 1
        done = second.events[-1].done
        assert done.status == pb.RUN_STATUS_SUCCEEDED
        assert done.queue_wait_ms > 0
        stored = (await orch.stub.GetRun(pb.GetRunRequest(run_id=done.id))).run
        assert stored.queue_wait_ms == done.queue_wait_ms
        after = await orch.stub.GetCapacity(pb.GetCapacityRequest())
        assert (after.active_runs, after.queued_runs) == (0, 0)


async def test_beyond_the_queue_size_a_run_is_refused_up_front_and_nothing_is_stored(
    stages: Stages, database_url: str
) -> None:
    env = {**ONE_SLOT, "SWARM_QUEUE_SIZE": "1"}
    async with held_instance() as (server, instances), orchestrator(stages, instances, database_url, env) as orch:
        running = Stream(orch, request("running"))
        await eventually(lambda: server.in_flight == 1)
        waiting = Stream(orch, request("waiting"))
        await waiting.until(lambda s: bool(s.queued()))
        refused = Stream(orch, request("refused"))
        await refused.task
        assert refused.error is not None
        assert refused.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "queue is full" in str(refused.error.details()) and "SWARM_QUEUE_SIZE=1" in str(refused.error.details())
        assert refused.events == []
        listed = await orch.stub.ListRuns(pb.ListRunsRequest())
        assert sorted(r.id for r in listed.runs) == sorted([running.run_id, waiting.run_id])
        assert server.gate is not None
        server.gate.set()
        await asyncio.gather(running.task, waiting.task)
        assert running.error is None and waiting.error is None


async def test_a_run_that_waits_past_its_deadline_fails_saying_why(stages: Stages, sqlite_url: str) -> None:
    env = {**ONE_SLOT, "SWARM_QUEUE_TIMEOUT_S": "0.3"}
    async with held_instance() as (server, instances), orchestrator(stages, instances, sqlite_url, env) as orch:
        running = Stream(orch, request("running"))
        await eventually(lambda: server.in_flight == 1)
        late = Stream(orch, request("late"))
        await late.task
        assert late.error is not None and late.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "SWARM_QUEUE_TIMEOUT_S=0.3" in str(late.error.details())
        done = late.events[-1].done
        assert late.kinds()[:2] == ["accepted", "queued"]
        assert done.status == pb.RUN_STATUS_FAILED and "nothing was called" in done.error
        stored = (await orch.stub.GetRun(pb.GetRunRequest(run_id=done.id))).run
        assert stored.status == pb.RUN_STATUS_FAILED and stored.error == done.error
        assert len(server.chat_requests) == 1  # only the running run's
        assert server.gate is not None
        server.gate.set()
        await running.task
        assert running.error is None


async def test_one_callers_burst_does_not_starve_another(stages: Stages, sqlite_url: str) -> None:
    async with held_instance() as (server, instances), orchestrator(stages, instances, sqlite_url, ONE_SLOT) as orch:
        burst = [Stream(orch, request("alice-0"), "alice")]
        await eventually(lambda: server.in_flight == 1)
        for i in range(1, 4):
            burst.append(Stream(orch, request(f"alice-{i}"), "alice"))
            await burst[-1].until(lambda s: bool(s.queued()))
        bob = Stream(orch, request("bob"), "bob")
        await bob.until(lambda s: bool(s.queued()))
        assert bob.queued()[-1].position == 1  # ahead of alice's three waiting runs
        assert bob.queued()[-1].depth == 4
        assert server.gate is not None
        server.gate.set()
        await asyncio.gather(*(s.task for s in [*burst, bob]))
        tags = [r.prompt.rsplit("(", 1)[1].rstrip(")") for r in server.chat_requests]
        assert tags == ["alice-0", "bob", "alice-1", "alice-2", "alice-3"]


async def test_a_client_that_leaves_while_queued_keeps_its_run(stages: Stages, sqlite_url: str) -> None:
    async with held_instance() as (server, instances), orchestrator(stages, instances, sqlite_url, ONE_SLOT) as orch:
        running = Stream(orch, request("running"))
        await eventually(lambda: server.in_flight == 1)
        leaving = Stream(orch, request("leaving"))
        await leaving.until(lambda s: bool(s.queued()))
        run_id = leaving.run_id
        leaving.call.cancel()
        with contextlib.suppress(asyncio.CancelledError):  # how grpc.aio ends a call its client cancelled
            await leaving.task
        assert server.gate is not None
        server.gate.set()
        await running.task

        async def status() -> int:
            run: pb.Run = (await orch.stub.GetRun(pb.GetRunRequest(run_id=run_id))).run
            return run.status

        while await status() == pb.RUN_STATUS_RUNNING:  # noqa: ASYNC110 (polling the store over RPC)
            await asyncio.sleep(0.02)
        assert await status() == pb.RUN_STATUS_SUCCEEDED


@pytest.mark.postgres
async def test_replicas_sharing_postgres_never_give_an_instance_more_than_its_slots(
    stages: Stages, postgres_url: str
) -> None:
    async with AsyncExitStack() as stack:
        server, instances = await stack.enter_async_context(held_instance(slots=2))
        replicas: list[Orchestrator] = [
            await stack.enter_async_context(orchestrator(stages, instances, postgres_url, ONE_SLOT)) for _ in range(2)
        ]
        streams = [Stream(replicas[i % 2], request(f"run-{i}"), f"user{i}") for i in range(6)]
        await asyncio.gather(*(s.until(lambda s: len(s.events) > 0) for s in streams))

        async def settled() -> pb.GetCapacityResponse:
            while True:
                capacity: pb.GetCapacityResponse = await replicas[0].stub.GetCapacity(pb.GetCapacityRequest())
                if capacity.active_runs == 2 and capacity.queued_runs == 4:
                    return capacity
                await asyncio.sleep(0.02)

        capacity = await settled()
        assert [(i.slots, i.in_use) for i in capacity.instances] == [(2, 2)]
        await eventually(lambda: server.in_flight == 2)
        assert server.gate is not None
        server.gate.set()
        await asyncio.gather(*(s.task for s in streams))
        assert [s.error for s in streams] == [None] * 6
        assert all(s.events[-1].done.status == pb.RUN_STATUS_SUCCEEDED for s in streams)
        assert server.peak_in_flight == 2


async def test_the_command_line_shows_the_queue_and_a_runs_place_in_it(stages: Stages, sqlite_url: str) -> None:
    async with held_instance() as (server, instances), orchestrator(stages, instances, sqlite_url, ONE_SLOT) as orch:
        running = Stream(orch, request("running"))
        await eventually(lambda: server.in_flight == 1)
        queued_run = asyncio.create_task(
            swarm(orch.target, "run", TASK.format(tag="cli"), "--size", "1", key=orch.api_key)
        )
        while (await orch.stub.GetCapacity(pb.GetCapacityRequest())).queued_runs == 0:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        code, out, err = await swarm(orch.target, "capacity", key=orch.api_key)
        assert code == 0, err
        assert "runs driven: 1 of 8\nruns waiting: 1 of 256, the oldest for " in out
        assert "  only         1/1 slots in use\n" in out
        code, out, _ = await swarm(orch.target, "capacity", "--json", key=orch.api_key)
        assert json.loads(out)["queued_runs"] == 1
        assert server.gate is not None
        server.gate.set()
        code, out, err = await queued_run
        assert code == 0, err
        assert "  queued: 1 of 1 waiting for capacity (0s so far, at most 600s)\n" in err
        await running.task


async def test_swarm_status_shows_health_queue_throughput_and_spend(stages: Stages, sqlite_url: str) -> None:
    priced = (
        '[{"name": "only", "base_url": "URL", "model": "qwen", "slots": 1, '
        '"price_input_per_mtok": 1000.0, "price_output_per_mtok": 2000.0}]'
    )
    async with (
        held_instance() as (server, _),
        orchestrator(stages, priced.replace("URL", server.base_url), sqlite_url, ONE_SLOT) as orch,
    ):
        assert server.gate is not None
        server.gate.set()
        done = Stream(orch, request("paid"))
        await done.task
        cost = done.events[-1].done.usage.cost_usd
        assert cost > 0
        server.gate.clear()
        running = Stream(orch, request("running"))
        await eventually(lambda: server.in_flight == 1)
        waiting = Stream(orch, request("waiting"))
        await waiting.until(lambda s: bool(s.queued()))
        code, out, err = await swarm(orch.target, "status", key=orch.api_key)
        assert code == 0, err
        assert "instances: 1 of 1 healthy\n  only             healthy\n" in out
        assert "queue: 1 of 8 runs driven, 1 waiting (the oldest for " in out
        assert "last 15 min: 1 runs finished (0.07/min), 2 running, 1 succeeded; success 100%\n" in out
        assert f"today (UTC): 3 runs, ${cost:.4f} spent\n" in out
        code, out, _ = await swarm(orch.target, "status", "--json", key=orch.api_key)
        document = json.loads(out)
        assert document["queue"]["queued_runs"] == 1 and document["today"]["cost_usd"] == pytest.approx(cost)
        server.gate.set()
        await asyncio.gather(running.task, waiting.task)
