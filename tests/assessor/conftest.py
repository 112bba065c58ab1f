"""A real assessor server on an ephemeral port, and a stub talking to it over a real channel."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest_asyncio

from swarm.v1 import assessor_pb2_grpc
from swarm_assessor.config import AssessorConfig
from swarm_assessor.server import create_server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    # Mutated probe inputs are off here so the tests can count the tests' own probes exactly;
    # tests/assessor/test_mutated_probes.py runs a server with them on.
    config = AssessorConfig(address="127.0.0.1:0", timeout_s=5.0, max_concurrency=4, max_candidates=8, mutated_probes=0)
    server, port = await create_server(config)
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
        yield chan
    await server.stop(0)


@pytest_asyncio.fixture(loop_scope="session")
async def stub(channel: grpc.aio.Channel) -> assessor_pb2_grpc.AssessorServiceStub:
    return assessor_pb2_grpc.AssessorServiceStub(channel)
