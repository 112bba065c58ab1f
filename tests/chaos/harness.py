"""The chaos suite's plumbing: the four services as real processes that can be SIGKILLed and
restarted on the same port (the orchestrator on the same database), faulty instances in this
process, and a stream of runs at a steady concurrency whose every outcome is recorded.

The process helpers are the ones of tests/test_shutdown.py (``launched``, ``service_env``,
``wait_serving``); the faulty instances are ``swarm_bench.faulty``, shared with bench/soak.py.
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

import grpc

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarm_bench.faulty import FaultRates, FaultyLLMServer
from swarm_orchestrator.prompts import SOLVE_SYSTEM
from swarm_orchestrator.tests_writer import TESTS_SYSTEM
from swarmlib import bearer_interceptors
from tests.fakes.replies import FIB_REPLY, REFINED_FIB_REPLY
from tests.orchestrator.test_swarm import WRONG_FIB_REPLY
from tests.test_shutdown import free_port, health_stub, launched, service_env, wait_serving

FIB_TASK = """Write a Python function fib(n) that returns the n-th Fibonacci number.

>>> fib(0)
0
>>> fib(1)
1
>>> fib(10)
55
"""
FIB_ASSERTS = "assert fib(0) == 0\nassert fib(1) == 1\nassert fib(2) == 1\nassert fib(10) == 55\n"

INSTANCE_TIMEOUT_S = 1.5
LEASE_S = 1.0
# Long enough for the collator to come back from a kill (it loads torch and the embedding model).
STAGE_TIMEOUT_S = 45.0
STARTUP_S = {"orchestrator": 30.0, "collator": 90.0, "assessor": 30.0, "refiner": 30.0}


def model_reply(seed: int) -> Callable[[list[dict[str, object]]], str]:
    """Answer as a small model would: a solution, right or (half the time) wrong, so that most runs
    need the refiner; assert lines for the test writer; a right rewrite for the refiner."""
    rng = random.Random(seed)

    def reply(messages: list[dict[str, object]]) -> str:
        system = next((m.get("content") for m in messages if m.get("role") == "system"), "")
        if system == SOLVE_SYSTEM:
            return FIB_REPLY if rng.random() < 0.5 else WRONG_FIB_REPLY
        if system == TESTS_SYSTEM:
            return FIB_ASSERTS
        return REFINED_FIB_REPLY

    return reply


@asynccontextmanager
async def faulty_instances(count: int, rates: FaultRates, seed: int) -> AsyncIterator[list[FaultyLLMServer]]:
    async with AsyncExitStack() as stack:
        servers = []
        for k in range(count):
            reply = model_reply(seed + k)
            server = FaultyLLMServer(f"faulty-{k}", reply, rates, seed + k, hang_s=INSTANCE_TIMEOUT_S * 3)
            servers.append(await stack.enter_async_context(server))
        yield servers


@dataclass
class Service:
    """One service as a process on a fixed port; ``kill`` SIGKILLs it, ``start`` (re)starts it."""

    service: str
    port: int
    env: dict[str, str]
    tmp: Path
    processes: ExitStack
    proc: Popen[bytes] | None = None
    starts: int = 0

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.tmp / f"{self.service}-{self.starts}.log"

    def launch(self) -> None:
        self.starts += 1
        self.proc = self.processes.enter_context(launched(self.service, self.env, self.log_path))

    async def serving(self) -> None:
        assert self.proc is not None
        async with health_stub(self.port) as health:
            await wait_serving(self.proc, health, self.log_path, STARTUP_S[self.service])

    async def start(self) -> None:
        self.launch()
        await self.serving()

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"{self.service} is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @contextmanager
    def paused(self) -> Iterator[None]:
        """SIGSTOP for the block, SIGCONT after: calls to it wait, as to a stage that is very slow."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.service} is not running"
        self.proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.proc.send_signal(signal.SIGCONT)


@dataclass
class Swarm:
    orchestrator: Service
    collator: Service
    assessor: Service
    refiner: Service

    # The orchestrator's local approver key (``service_env`` makes it): every call sends it.
    api_key: str

    def stages(self) -> list[Service]:
        return [self.collator, self.assessor, self.refiner]


@asynccontextmanager
async def swarm_processes(tmp: Path, instances: list[FaultyLLMServer], database_url: str) -> AsyncIterator[Swarm]:
    """The four services as processes, all serving; killed on the way out."""
    with ExitStack() as processes:

        def service(name: str, extra: Mapping[str, str]) -> Service:
            port = free_port()
            return Service(name, port, {**service_env(name, port, tmp), **extra}, tmp, processes)

        collator = service("collator", {})
        assessor = service("assessor", {"SWARM_ASSESSOR_TIMEOUT_S": "20"})
        refiner = service("refiner", {"SWARM_REFINER_LLM_TIMEOUT_S": str(INSTANCE_TIMEOUT_S)})
        specs = [{"name": s.name, "base_url": s.base_url, "model": "qwen"} for s in instances]
        orch = service(
            "orchestrator",
            {
                "SWARM_INSTANCES": json.dumps(specs),
                "SWARM_DATABASE_URL": database_url,
                "SWARM_INSTANCE_TIMEOUT_S": str(INSTANCE_TIMEOUT_S),
                "SWARM_STAGE_TIMEOUT_S": str(STAGE_TIMEOUT_S),
                "SWARM_STAGE_RETRY_MAX_DELAY_S": "1.0",
                "SWARM_LLM_RETRY_BASE_DELAY_S": "0.01",
                "SWARM_HEALTH_INTERVAL_S": "1",
                "SWARM_RUN_LEASE_S": str(LEASE_S),
                "SWARM_REFINE_ROUNDS": "1",
                "SWARM_REFINE_BUDGET_S": str(STAGE_TIMEOUT_S),
                "SWARM_COLLATOR_TARGET": collator.target,
                "SWARM_ASSESSOR_TARGET": assessor.target,
                "SWARM_REFINER_TARGET": refiner.target,
            },
        )
        swarm = Swarm(orch, collator, assessor, refiner, (tmp / "cli-key").read_text().strip())
        for each in (collator, assessor, refiner, orch):
            each.launch()
        for each in (collator, assessor, refiner, orch):
            await each.serving()
        yield swarm


@dataclass
class Attempt:
    """One RunSwarm call: its run id once accepted, its events, and how its stream ended."""

    number: int
    run_id: str = ""
    events: list[pb.RunSwarmResponse] = field(default_factory=list)
    code: grpc.StatusCode | None = None  # None: the stream ended normally
    details: str = ""
    hung_up: bool = False  # the client went away after the first answer (the run goes on)

    @property
    def accepted(self) -> bool:
        return bool(self.run_id)

    @property
    def done(self) -> pb.Run | None:
        return self.events[-1].done if self.events and self.events[-1].HasField("done") else None

    @property
    def answered_ids(self) -> set[str]:
        """Candidates the stream announced: each was stored before its event was sent."""
        return {e.instance_finished.candidate_id for e in self.events if e.HasField("instance_finished")}

    @property
    def in_flight(self) -> bool:
        return self.accepted and self.code is None and self.done is None and not self.hung_up

    def waits_for(self, stage: str) -> bool:
        """Whether the run is in flight and its next stage call is (or is about to be) ``stage``'s."""
        seen = {e.WhichOneof("event") for e in self.events}
        if not self.in_flight:
            return False
        if stage == "assessor":
            return "instance_finished" in seen and "assessed" not in seen
        if stage == "collator":
            return "assessed" in seen and "collated" not in seen
        return "collated" in seen and "refined" not in seen  # the refiner


def keyed_channel(target: str, api_key: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, interceptors=bearer_interceptors(api_key))


async def send_run(
    target: str, api_key: str, attempt: Attempt, request: pb.RunSwarmRequest, hang_up: bool = False
) -> None:
    """One call on a channel of its own (a restarted orchestrator is reached at once); with
    ``hang_up`` the client goes away once the first answer has arrived."""
    async with keyed_channel(target, api_key) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        try:
            async for event in stub.RunSwarm(request, timeout=300.0):
                if event.run_id and not attempt.run_id:
                    attempt.run_id = event.run_id
                attempt.events.append(event)
                if hang_up and event.HasField("instance_finished"):
                    attempt.hung_up = True
                    return
        except grpc.aio.AioRpcError as exc:
            attempt.code, attempt.details = exc.code(), exc.details() or ""


def varied_request(number: int) -> tuple[pb.RunSwarmRequest, bool]:
    """The ``number``-th run of a stream: swarms of 2 to 4, every other one streaming its text,
    one in five without refinement; and whether its client hangs up (one in seven)."""
    request = pb.RunSwarmRequest(
        task=FIB_TASK, swarm_size=2 + number % 3, stream_output=number % 2 == 1, skip_refine=number % 5 == 4
    )
    return request, number % 7 == 3


@dataclass
class RunStream:
    """At least ``runs`` runs sent ``concurrency`` at a time, and more until ``schedule_done`` is
    set (the chaos schedule waits for runs at given stages; the stream must outlast it). A call
    refused before acceptance because the orchestrator is down is sent again, and counted."""

    target: str
    api_key: str
    runs: int
    concurrency: int
    attempts: list[Attempt] = field(default_factory=list)
    refused_while_down: int = 0
    finished: int = 0
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    schedule_done: asyncio.Event = field(default_factory=asyncio.Event)
    sent: int = 0

    async def run(self) -> None:
        async def worker() -> None:
            while self.sent < self.runs or not self.schedule_done.is_set():
                number = self.sent
                self.sent += 1
                while True:
                    attempt = Attempt(number)
                    self.attempts.append(attempt)
                    await send_run(self.target, self.api_key, attempt, *varied_request(number))
                    if attempt.accepted or attempt.code is not grpc.StatusCode.UNAVAILABLE:
                        break
                    self.attempts.remove(attempt)
                    self.refused_while_down += 1
                    await asyncio.sleep(0.2)
                self.finished += 1
                self.changed.set()

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))

    async def until(self, condition: Callable[[], bool]) -> None:
        while not condition():
            self.changed.clear()
            await self.changed.wait()

    def reached(self, finished: int) -> Callable[[], bool]:
        return lambda: self.finished >= finished

    def waiting_for(self, stage: str) -> Callable[[], bool]:
        return lambda: any(a.waits_for(stage) for a in self.attempts)

    def in_flight_with_an_answer(self) -> bool:
        return any(a.in_flight and a.answered_ids for a in self.attempts)


async def stored_runs(target: str, api_key: str, run_ids: list[str]) -> dict[str, pb.Run]:
    async with keyed_channel(target, api_key) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        return {rid: (await stub.GetRun(pb.GetRunRequest(run_id=rid), timeout=10.0)).run for rid in run_ids}


async def settled_runs(target: str, api_key: str, run_ids: list[str], limit_s: float) -> dict[str, pb.Run]:
    """The stored runs once none is RUNNING, or as they are after ``limit_s``."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while True:
        runs = await stored_runs(target, api_key, run_ids)
        if all(r.status != pb.RUN_STATUS_RUNNING for r in runs.values()):
            return runs
        if asyncio.get_running_loop().time() > deadline:
            return runs
        await asyncio.sleep(0.2)
