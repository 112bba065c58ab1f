"""A client that hangs up on a RunSwarm stream is routine (a closed browser tab, an interrupted
CLI): the run goes on, and the orchestrator's log says nothing alarming about it. Found by the
chaos suite: the tracing interceptor's stream generator was closed outside the context it had
entered, and OpenTelemetry logged an ERROR with two tracebacks ("Failed to detach context",
opentelemetry-python-contrib#2357) for such hang-ups, drowning the errors that matter."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarmlib._server import _LeftStreamDetachFilter
from tests.fakes.openai_server import Behaviour, FakeLLMServer
from tests.test_shutdown import (
    FIB_TASK,
    free_port,
    health_stub,
    launched,
    orchestrator_channel,
    service_env,
    wait_exit,
    wait_serving,
)

HANG_UPS = 6


async def test_clients_hanging_up_mid_stream_log_no_error(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "orchestrator.log"
    async with FakeLLMServer(behaviour=Behaviour.SLOW, chunk_delay=0.01) as llm, FakeLLMServer() as fast:
        env = service_env("orchestrator", port, tmp_path)
        instances = [
            {"name": "fast", "base_url": fast.base_url, "model": "qwen"},
            {"name": "slow", "base_url": llm.base_url, "model": "qwen"},
        ]
        env.update(
            SWARM_INSTANCES=json.dumps(instances),
            SWARM_TEST_WRITERS="0",
            # Nothing listens there: the runs end when their collation and assessment give up.
            SWARM_STAGE_TIMEOUT_S="1",
            SWARM_COLLATOR_TARGET=f"127.0.0.1:{free_port()}",
            SWARM_ASSESSOR_TARGET=f"127.0.0.1:{free_port()}",
            SWARM_REFINER_TARGET=f"127.0.0.1:{free_port()}",
        )
        with launched("orchestrator", env, log_path) as proc:
            async with health_stub(port) as health:
                await wait_serving(proc, health, log_path, 30.0)
            run_ids = []
            for _ in range(HANG_UPS):
                async with orchestrator_channel(port, tmp_path) as channel:
                    stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
                    call = stub.RunSwarm(pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, skip_refine=True))
                    run_ids.append((await call.read()).run_id)
                    while not (await call.read()).HasField("instance_finished"):
                        pass
            async with orchestrator_channel(port, tmp_path) as channel:
                stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
                for run_id in run_ids:  # the runs went on without their clients, to their end
                    while (await stub.GetRun(pb.GetRunRequest(run_id=run_id))).run.status == pb.RUN_STATUS_RUNNING:  # noqa: ASYNC110
                        await asyncio.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            await wait_exit(proc, 15.0)
    log = log_path.read_text(errors="replace")
    errors = [line for line in log.splitlines() if " ERROR " in line or line.startswith("Traceback")]
    assert not errors, log[-4000:]


def detach_failure(during: BaseException | None) -> logging.LogRecord:
    try:
        try:
            if during is not None:
                raise during
        finally:
            raise ValueError("<Token ...> was created in a different Context")
    except ValueError:
        exc_info = sys.exc_info()
    return logging.LogRecord(
        "opentelemetry.context", logging.ERROR, __file__, 1, "Failed to detach context", (), exc_info
    )


def test_only_the_left_stream_case_is_dropped() -> None:
    keep = _LeftStreamDetachFilter().filter
    assert not keep(detach_failure(GeneratorExit()))
    assert keep(detach_failure(None)) and keep(detach_failure(RuntimeError("else")))
    other = logging.LogRecord("opentelemetry.context", logging.ERROR, __file__, 1, "something else", (), None)
    assert keep(other)
