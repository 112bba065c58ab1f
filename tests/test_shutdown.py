"""Each service as a real process: SERVING once up, then SIGTERM drains it and it exits 0.

The services run as ``python -m swarm_<service>`` exactly as in a container, so these tests cover
what in-process tests cannot: the signal handlers, health flipping to NOT_SERVING for load
balancers, the port being released, and a run in flight being interrupted and stored as FAILED.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager, suppress
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarm_cli.local_keys import ensure_key
from swarmlib import bearer_interceptors
from tests.fakes.openai_server import Behaviour, FakeLLMServer

ROOT = Path(__file__).resolve().parent.parent
GRACE_S = 1.5
# Interpreter shutdown and closing the database/HTTP clients after the drain.
EXIT_MARGIN_S = 5.0

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

FIB_TASK = """Write a Python function fib(n) that returns the n-th Fibonacci number.

>>> fib(10)
55
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def service_env(service: str, port: int, tmp_path: Path, llm_url: str = "http://127.0.0.1:9/v1") -> dict[str, str]:
    """The environment of ``python -m swarm_<service>`` bound to ``127.0.0.1:port`` with a short grace."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "OTEL_"))}
    env["PYTHONUNBUFFERED"] = "1"
    env[f"SWARM_{service.upper()}_ADDR"] = f"127.0.0.1:{port}"
    env[f"SWARM_{service.upper()}_GRACE_S"] = str(GRACE_S)
    env["SWARM_METRICS_ADDR"] = "127.0.0.1:0"  # not the fixed default: two replicas run at once
    if service == "orchestrator":
        instances = [{"name": "fake-1", "base_url": llm_url, "model": "qwen"}]
        keys_file = tmp_path / "api-keys.json"
        ensure_key(keys_file, tmp_path / "cli-key", "local", "approver")
        env.update(
            SWARM_API_KEYS_FILE=str(keys_file),
            SWARM_INSTANCES=json.dumps(instances),
            SWARM_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
            SWARM_INSTANCE_TIMEOUT_S="60",
            SWARM_HEALTH_INTERVAL_S="60",
        )
    elif service == "collator":
        env["HF_HUB_OFFLINE"] = "1"
    return env


@contextmanager
def launched(service: str, env: Mapping[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m swarm_<service>``, killed on the way out if a test left it running."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", f"swarm_{service}"], env=dict(env), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def orchestrator_channel(port: int, tmp_path: Path) -> grpc.aio.Channel:
    """A channel to a launched orchestrator that sends the key ``service_env`` made for it."""
    key = (tmp_path / "cli-key").read_text().strip()
    return grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=bearer_interceptors(key))


def output(log_path: Path) -> str:
    return log_path.read_text(errors="replace")[-3000:]


@asynccontextmanager
async def health_stub(port: int) -> AsyncIterator[health_pb2_grpc.HealthStub]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield health_pb2_grpc.HealthStub(channel)
    finally:
        await channel.close()


async def wait_serving(
    proc: subprocess.Popen[bytes], stub: health_pb2_grpc.HealthStub, log_path: Path, limit_s: float
) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"exited early with {proc.returncode}:\n{output(log_path)}"
        with suppress(grpc.aio.AioRpcError):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            if reply.status == SERVING:
                return
        await asyncio.sleep(0.1)
    pytest.fail(f"not SERVING within {limit_s}s:\n{output(log_path)}")


async def wait_exit(proc: subprocess.Popen[bytes], limit_s: float) -> float:
    """Seconds until the process exited; fails the test when it outlives ``limit_s``."""
    started = time.monotonic()
    while proc.poll() is None:
        if time.monotonic() - started > limit_s:
            pytest.fail(f"still running {limit_s:.1f}s after SIGTERM")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


async def assert_port_closed(port: int) -> None:
    async with health_stub(port) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("service", "startup_s"), [("orchestrator", 20.0), ("collator", 60.0), ("assessor", 20.0), ("refiner", 20.0)]
)
async def test_sigterm_flips_health_and_exits_zero(service: str, startup_s: float, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / f"{service}.log"
    with launched(service, service_env(service, port, tmp_path), log_path) as proc:
        async with health_stub(port) as stub:
            await wait_serving(proc, stub, log_path, startup_s)
            # A watcher (a load balancer, a kubelet) must hear NOT_SERVING before the port goes away.
            watch = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=GRACE_S + EXIT_MARGIN_S)
            first = await watch.read()
            assert first.status == SERVING
            proc.send_signal(signal.SIGTERM)
            second = await watch.read()
            assert second.status == NOT_SERVING
            watch.cancel()
        elapsed = await wait_exit(proc, GRACE_S + EXIT_MARGIN_S)
        assert proc.returncode == 0, f"exit code {proc.returncode} after {elapsed:.1f}s:\n{output(log_path)}"
    await assert_port_closed(port)


async def test_sigterm_interrupts_a_run_in_flight_and_stores_it_failed(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "orchestrator.log"
    async with FakeLLMServer(behaviour=Behaviour.SLOW, chunk_delay=60.0) as llm:
        env = service_env("orchestrator", port, tmp_path, llm_url=llm.base_url)
        with launched("orchestrator", env, log_path) as proc:
            async with health_stub(port) as health:
                await wait_serving(proc, health, log_path, 20.0)
            channel = orchestrator_channel(port, tmp_path)
            try:
                stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
                call = stub.RunSwarm(pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True), timeout=30.0)
                accepted = await call.read()
                run_id = accepted.run_id
                assert run_id and accepted.accepted.status == pb.RUN_STATUS_RUNNING
                for _ in range(100):  # the model is now streaming, one word a minute
                    if llm.chat_requests:
                        break
                    await asyncio.sleep(0.05)
                assert llm.chat_requests, "the run never reached the model"

                proc.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                events: list[pb.RunSwarmResponse] = []
                with pytest.raises(grpc.aio.AioRpcError) as ended:
                    while (event := await call.read()) is not grpc.aio.EOF:
                        events.append(event)
                waited = time.monotonic() - signalled
            finally:
                await channel.close()
            # The client got a status promptly (after the drain budget), not a hang until its deadline.
            assert ended.value.code() in {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}, ended.value
            assert waited < GRACE_S + EXIT_MARGIN_S
            assert not any(e.HasField("done") and e.done.status == pb.RUN_STATUS_SUCCEEDED for e in events)
            elapsed = await wait_exit(proc, GRACE_S + EXIT_MARGIN_S)
            assert proc.returncode == 0, f"exit code {proc.returncode} after {elapsed:.1f}s:\n{output(log_path)}"
    await assert_port_closed(port)

    with sqlite3.connect(tmp_path / "db.sqlite") as db:
        row = db.execute("SELECT status, error, finished_at FROM runs WHERE id = ?", (run_id,)).fetchone()
    assert row is not None, "the run was not stored"
    status, error, finished_at = row
    assert status == pb.RUN_STATUS_FAILED
    assert "interrupted" in error
    assert finished_at is not None
