"""Backpressure: a bounded number of executions run, a bounded number wait, the rest are refused.

The server tests run a real assessor with one execution slot and room for one waiting
execution, so a slow candidate holding the slot makes the refusals deterministic.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from swarm.v1 import assessor_pb2, assessor_pb2_grpc, common_pb2
from swarm_assessor.admission import Admission
from swarm_assessor.config import AssessorConfig
from swarm_assessor.server import create_server
from swarmlib import ConfigError, ResourceExhaustedError

TASK = "def one():\n    '''Return 1.\n\n    >>> one()\n    1\n    '''\n"
QUICK = "def one():\n    return 1\n"
SLOW = "import time\ntime.sleep(2.5)\n\ndef one():\n    return 1\n"


def _request(*codes: str) -> assessor_pb2.AssessRequest:
    return assessor_pb2.AssessRequest(
        run_id="bp",
        task=TASK,
        candidates=[common_pb2.CandidateCode(id=f"c{i}", code=code) for i, code in enumerate(codes)],
        timeout_seconds=5.0,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def stub() -> AsyncIterator[assessor_pb2_grpc.AssessorServiceStub]:
    config = AssessorConfig(
        address="127.0.0.1:0", max_concurrency=1, max_queued=1, max_candidates=2, queue_timeout_s=0.5, mutated_probes=0
    )
    server, port = await create_server(config)
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield assessor_pb2_grpc.AssessorServiceStub(channel)
    await server.stop(0)


async def _holding_the_slot(stub: assessor_pb2_grpc.AssessorServiceStub) -> asyncio.Task[assessor_pb2.AssessResponse]:
    async def call() -> assessor_pb2.AssessResponse:
        response: assessor_pb2.AssessResponse = await stub.Assess(_request(SLOW))
        return response

    slow = asyncio.create_task(call())
    await asyncio.sleep(0.5)  # let the slow request be admitted and take the only slot
    assert not slow.done()
    return slow


async def test_request_beyond_the_queue_is_refused_at_once(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    slow = await _holding_the_slot(stub)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Assess(_request(QUICK, QUICK))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "at capacity" in (refused.value.details() or "")
    held = await slow
    assert held.assessments[0].scores.tests_passed == 1, "the request holding the slot is not disturbed"


async def test_waiting_execution_gives_up_at_the_queue_deadline(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    slow = await _holding_the_slot(stub)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Assess(_request(QUICK))
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "no sandbox slot freed within" in (refused.value.details() or "")
    await slow
    after = await stub.Assess(_request(QUICK))
    assert after.assessments[0].scores.tests_passed == 1, "room is given back once the slot frees"


async def test_a_request_never_waits_out_its_queue_deadline_behind_its_own_executions(
    stub: assessor_pb2_grpc.AssessorServiceStub,
) -> None:
    # One slot, a 0.5 s queue deadline, two candidates of 0.7 s each: the second waits behind the
    # first longer than the deadline, but that is the request's own work, not another's.
    steady = "import time\ntime.sleep(0.7)\n\ndef one():\n    return 1\n"
    response = await stub.Assess(_request(steady, steady))
    assert [a.scores.tests_passed for a in response.assessments] == [1, 1]


async def test_admission_counts_and_releases() -> None:
    admission = Admission(limit=1, queue=2)
    with admission.admit(3):
        assert admission.pending == 3
        with pytest.raises(ResourceExhaustedError, match="at capacity"), admission.admit(1):
            pass
    assert admission.pending == 0
    loop = asyncio.get_running_loop()
    async with admission.slot(loop.time() + 1.0):
        with pytest.raises(ResourceExhaustedError, match="no sandbox slot freed"):
            async with admission.slot(loop.time() + 0.05):
                pass
    async with admission.slot(loop.time() + 0.05):
        pass


def test_config_refuses_a_queue_too_small_for_a_full_request() -> None:
    with pytest.raises(ConfigError, match="SWARM_ASSESSOR_MAX_QUEUED"):
        AssessorConfig(max_concurrency=1, max_queued=1, max_candidates=8)
