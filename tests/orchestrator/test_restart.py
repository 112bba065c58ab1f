"""The orchestrator as a real process, SIGKILLed mid-run: no run stays RUNNING. Restarted on the
same SQLite database, or with a second replica on the same PostgreSQL database, the run whose
orchestrator died ends FAILED "interrupted" within a lease and a third of it, and keeps the
answer that had arrived."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from pathlib import Path
from subprocess import Popen

import pytest

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc
from tests.fakes.openai_server import Behaviour, FakeLLMServer
from tests.test_shutdown import (
    FIB_TASK,
    free_port,
    health_stub,
    launched,
    orchestrator_channel,
    service_env,
    wait_serving,
)

LEASE_S = 1.0
# A lease and a third of it after the last renewal, plus a restart and slack for a loaded machine
# (bench/restart.py measures the real figures: about 4/3 of the lease).
RECLAIM_BOUND_S = LEASE_S * 4 / 3 + 8.0


@asynccontextmanager
async def instances() -> AsyncIterator[str]:
    """``SWARM_INSTANCES``: "fast" answers at once, "hung" never does."""
    async with FakeLLMServer() as fast, FakeLLMServer(behaviour=Behaviour.HANG) as hung:
        yield json.dumps(
            [
                {"name": "fast", "base_url": fast.base_url, "model": "qwen"},
                {"name": "hung", "base_url": hung.base_url, "model": "qwen"},
            ]
        )


@contextmanager
def orchestrator_process(
    tmp_path: Path, name: str, database_url: str, instances_env: str
) -> Iterator[tuple[Popen[bytes], int, Path]]:
    port = free_port()
    env = service_env("orchestrator", port, tmp_path)
    env.update(
        SWARM_INSTANCES=instances_env,
        SWARM_DATABASE_URL=database_url,
        SWARM_RUN_LEASE_S=str(LEASE_S),
        SWARM_TEST_WRITERS="0",
        # Nothing listens there: these runs never get past the hung instance.
        SWARM_COLLATOR_TARGET=f"127.0.0.1:{free_port()}",
        SWARM_ASSESSOR_TARGET=f"127.0.0.1:{free_port()}",
        SWARM_REFINER_TARGET=f"127.0.0.1:{free_port()}",
    )
    log_path = tmp_path / f"{name}.log"
    with launched("orchestrator", env, log_path) as proc:
        yield proc, port, log_path


async def serving(proc: Popen[bytes], port: int, log_path: Path) -> float:
    """Seconds until the process serves."""
    started = time.monotonic()
    async with health_stub(port) as health:
        await wait_serving(proc, health, log_path, 30.0)
    return time.monotonic() - started


async def start_run_with_one_answer(stack: AsyncExitStack, port: int, home: Path) -> str:
    """A run of two slots whose fast answer has arrived (it is stored before it is streamed)."""
    channel = orchestrator_channel(port, home)
    stack.push_async_callback(channel.close)
    call = orchestrator_pb2_grpc.OrchestratorServiceStub(channel).RunSwarm(
        pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, skip_refine=True), timeout=60.0
    )
    stack.callback(call.cancel)
    run_id: str = (await call.read()).run_id
    while not (await call.read()).HasField("instance_finished"):
        pass
    return run_id


async def stored_run(port: int, run_id: str, home: Path) -> pb.Run:
    async with orchestrator_channel(port, home) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        run: pb.Run = (await stub.GetRun(pb.GetRunRequest(run_id=run_id))).run
        return run


async def closed_run(port: int, run_id: str, since: float, home: Path) -> tuple[pb.Run, float]:
    """The run once it is no longer RUNNING, read from ``port``, and seconds from ``since``."""
    while (run := await stored_run(port, run_id, home)).status == pb.RUN_STATUS_RUNNING:
        assert time.monotonic() - since < RECLAIM_BOUND_S, f"still RUNNING {RECLAIM_BOUND_S:.1f}s after the kill"
        await asyncio.sleep(0.1)
    return run, time.monotonic() - since


def assert_interrupted_with_its_answer(run: pb.Run) -> None:
    assert run.status == pb.RUN_STATUS_FAILED
    assert run.error.startswith("run interrupted: the orchestrator driving it ("), run.error
    assert [c.instance for c in run.candidates] == ["fast"] and "def fib" in run.candidates[0].code
    assert run.usage.completion_tokens > 0


async def test_a_killed_orchestrator_restarted_on_sqlite_ends_its_run_interrupted(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    async with instances() as swarm, AsyncExitStack() as stack:
        with orchestrator_process(tmp_path, "first", url, swarm) as (first, port, log_path):
            await serving(first, port, log_path)
            run_id = await start_run_with_one_answer(stack, port, tmp_path)
            first.send_signal(signal.SIGKILL)
            first.wait()
            killed = time.monotonic()
        with orchestrator_process(tmp_path, "restarted", url, swarm) as (restarted, port, log_path):
            await serving(restarted, port, log_path)
            run, _ = await closed_run(port, run_id, killed, tmp_path)
            restarted.send_signal(signal.SIGTERM)
    assert_interrupted_with_its_answer(run)


@pytest.mark.postgres
async def test_a_second_replica_on_postgresql_ends_a_dead_replicas_run(tmp_path: Path, postgres_url: str) -> None:
    async with instances() as swarm, AsyncExitStack() as stack:
        with (
            orchestrator_process(tmp_path, "replica-a", postgres_url, swarm) as (a, port_a, log_a),
            orchestrator_process(tmp_path, "replica-b", postgres_url, swarm) as (b, port_b, log_b),
        ):
            await serving(a, port_a, log_a)
            await serving(b, port_b, log_b)
            run_id = await start_run_with_one_answer(stack, port_a, tmp_path)
            await asyncio.sleep(LEASE_S * 2)  # replica B sweeps meanwhile: a live replica's run is left alone
            assert (await stored_run(port_b, run_id, tmp_path)).status == pb.RUN_STATUS_RUNNING
            a.send_signal(signal.SIGKILL)
            a.wait()
            run, _ = await closed_run(port_b, run_id, time.monotonic(), tmp_path)
            assert b.poll() is None
    assert_interrupted_with_its_answer(run)
