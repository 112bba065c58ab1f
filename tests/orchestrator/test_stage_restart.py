"""An assessor that goes away during runs, as a real process: SIGKILLed and restarted while runs
are in flight, or SIGTERMed with a drain shorter than the assessment it is running. The runs in
flight wait for it (``wait_for_ready``, retries within the stage deadline) instead of failing,
and the first run after the restart is not lost to the channel's reconnect backoff."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import Popen

import grpc

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import Stages, instances_json, orchestrator
from tests.fakes.openai_server import Behaviour, FakeLLMServer
from tests.orchestrator.test_swarm import FIB_TASK, collect
from tests.test_shutdown import GRACE_S, free_port, health_stub, launched, service_env, wait_exit, wait_serving

# A right answer whose module takes this long to load: every assessment of it lasts that long.
SLOW_LOAD_S = 4.0
SLOW_FIB_REPLY = f"""Here it is:

```python
import time

time.sleep({SLOW_LOAD_S})


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
```
"""


@contextmanager
def assessor_process(tmp_path: Path, port: int, name: str) -> Iterator[tuple[Popen[bytes], Path]]:
    env = service_env("assessor", port, tmp_path)
    env["SWARM_ASSESSOR_TIMEOUT_S"] = "20"
    log_path = tmp_path / f"{name}.log"
    with launched("assessor", env, log_path) as proc:
        yield proc, log_path


async def serving(proc: Popen[bytes], port: int, log_path: Path) -> None:
    async with health_stub(port) as health:
        await wait_serving(proc, health, log_path, 30.0)


async def test_runs_in_flight_wait_for_a_killed_and_restarted_assessor(stages: Stages, tmp_path: Path) -> None:
    port = free_port()
    mine = Stages(stages.collator, f"127.0.0.1:{port}", stages.refiner)
    async with (
        FakeLLMServer(behaviour=Behaviour.SLOW, chunk_delay=0.02) as llm,
        orchestrator(
            mine, instances_json([("fake-1", llm.base_url)]), f"sqlite+aiosqlite:///{tmp_path / 'db'}"
        ) as orch,
    ):
        with assessor_process(tmp_path, port, "assessor") as (first, log_path):
            await serving(first, port, log_path)
            # The channel connects, so the kill below breaks a live connection, as in production.
            events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True))
            assert error is None, error
            first.send_signal(signal.SIGKILL)
            first.wait()
        request = pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, skip_refine=True)
        in_flight = [asyncio.create_task(collect(orch.stub, request)) for _ in range(3)]
        await asyncio.sleep(4.0)  # the runs have their answers and wait for the assessor; its backoff grows
        assert not any(task.done() for task in in_flight)
        with assessor_process(tmp_path, port, "restarted") as (restarted, log_path):
            await serving(restarted, port, log_path)
            results = await asyncio.wait_for(asyncio.gather(*in_flight), 60.0)
            for events, error in results:
                assert error is None, error
                assert events[-1].done.status == pb.RUN_STATUS_SUCCEEDED and events[-1].done.tests_found == 3
            events, error = await collect(orch.stub, request)  # and the next one, on the same channel
            assert error is None and events[-1].done.status == pb.RUN_STATUS_SUCCEEDED
            restarted.send_signal(signal.SIGTERM)
            await wait_exit(restarted, 10.0)


async def test_a_run_survives_an_assessor_drained_mid_assessment_and_restarted(stages: Stages, tmp_path: Path) -> None:
    port = free_port()
    mine = Stages(stages.collator, f"127.0.0.1:{port}", stages.refiner)
    async with (
        FakeLLMServer(reply=SLOW_FIB_REPLY) as llm,
        orchestrator(
            mine,
            instances_json([("fake-1", llm.base_url)]),
            f"sqlite+aiosqlite:///{tmp_path / 'db'}",
            SWARM_TEST_WRITERS="0",
        ) as orch,
    ):
        with assessor_process(tmp_path, port, "assessor") as (first, log_path):
            await serving(first, port, log_path)
            call = orch.stub.RunSwarm(pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True))
            while not (await call.read()).HasField("instance_finished"):
                pass
            await asyncio.sleep(1.0)  # the assessor is loading the slow module now
            first.send_signal(signal.SIGTERM)  # a drain of GRACE_S, shorter than the assessment
            await wait_exit(first, GRACE_S + 10.0)
        assert GRACE_S < SLOW_LOAD_S
        with assessor_process(tmp_path, port, "restarted") as (restarted, log_path):
            await serving(restarted, port, log_path)
            events = []
            while (event := await asyncio.wait_for(call.read(), 60.0)) is not grpc.aio.EOF:
                events.append(event)
            restarted.send_signal(signal.SIGTERM)
            await wait_exit(restarted, 10.0)
    run = events[-1].done
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run.error
    assert run.candidates[0].scores.tests_passed == 3 and "time.sleep" in run.final.code
