"""What a caller learns when a handler fails: a domain error's status and message, or for anything
unexpected only ``INTERNAL`` and an error id, whose traceback the server's log holds.

The servicers here raise on purpose, with a canary in the exception's text; the server around them
is the real one every service builds (``build_server``), called over a real channel.
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider

from swarm.v1 import collator_pb2, collator_pb2_grpc, orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarmlib import InvalidArgumentError, SwarmServer, build_server
from swarmlib._server import ERROR_ID_METADATA

CANARY = "CANARY-9f3e-SELECT * FROM runs WHERE task = 'secret task'"
ERROR_ID = re.compile(r"internal error ([0-9a-f]{16}):")


class FailingCollator(collator_pb2_grpc.CollatorServiceServicer):
    """Fails as the request's run_id says: an unexpected exception, or a domain error."""

    async def Collate(
        self, request: collator_pb2.CollateRequest, context: grpc.aio.ServicerContext
    ) -> collator_pb2.CollateResponse:
        if request.run_id == "domain":
            raise InvalidArgumentError("candidates is empty: send at least one candidate to collate")
        if request.run_id == "echo":
            raise InvalidArgumentError(f"run_id {'🐝' * 50_000!r} is not a run")
        raise RuntimeError(CANARY)


class FailingOrchestrator(orchestrator_pb2_grpc.OrchestratorServiceServicer):
    """A stream that fails before its first event, or after one, as the task says."""

    async def RunSwarm(
        self, request: pb.RunSwarmRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RunSwarmResponse]:
        if request.task == "after one event":
            yield pb.RunSwarmResponse(run_id="r1")
        raise KeyError(CANARY)


@pytest.fixture(scope="module")
async def channel() -> AsyncIterator[grpc.aio.Channel]:
    def register(server: grpc.aio.Server) -> None:
        collator_pb2_grpc.add_CollatorServiceServicer_to_server(FailingCollator(), server)
        orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(FailingOrchestrator(), server)

    server: SwarmServer
    server, port = await build_server(
        service_names=["swarm.v1.CollatorService", "swarm.v1.OrchestratorService"],
        register=register,
        address="127.0.0.1:0",
        tracer_provider=TracerProvider(),
    )
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
        yield chan
    await server.stop(0)


def assert_internal_with_logged_id(error: grpc.aio.AioRpcError, caplog: pytest.LogCaptureFixture) -> None:
    assert error.code() == grpc.StatusCode.INTERNAL
    details = error.details() or ""
    assert CANARY not in details and "RuntimeError" not in details and "KeyError" not in details
    match = ERROR_ID.match(details)
    assert match, details
    error_id = match.group(1)
    trailing = dict(error.trailing_metadata() or ())
    assert trailing.get(ERROR_ID_METADATA) == error_id
    records = [r for r in caplog.records if error_id in r.getMessage()]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    # The log holds it in full: the exception's text and its traceback.
    assert CANARY in caplog.text and "Traceback" in caplog.text


async def test_an_unexpected_exception_reaches_the_caller_as_internal_with_an_error_id(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    stub = collator_pb2_grpc.CollatorServiceStub(channel)
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Collate(collator_pb2.CollateRequest(run_id="boom"), timeout=10)
    assert_internal_with_logged_id(raised.value, caplog)


@pytest.mark.parametrize("task", ["before any event", "after one event"])
async def test_a_stream_that_fails_unexpectedly_ends_internal_with_an_error_id(
    channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture, task: str
) -> None:
    stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
    events: list[pb.RunSwarmResponse] = []
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as raised:
        async for event in stub.RunSwarm(pb.RunSwarmRequest(task=task), timeout=10):
            events.append(event)
    assert len(events) == (1 if task == "after one event" else 0)
    assert_internal_with_logged_id(raised.value, caplog)


async def test_a_domain_error_keeps_its_status_and_message(channel: grpc.aio.Channel) -> None:
    stub = collator_pb2_grpc.CollatorServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Collate(collator_pb2.CollateRequest(run_id="domain"), timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert raised.value.details() == "candidates is empty: send at least one candidate to collate"


@pytest.mark.parametrize(
    "payload",
    [
        b"\x0a\x02\xff\xfe",  # run_id (field 1) with bytes that are not UTF-8
        b"\xff\xff\xff\xff",  # not the wire format at all
        b"\x12\x05\x0a\x03\xc3\x28a",  # a candidate whose id is not UTF-8
    ],
)
async def test_bytes_that_are_not_the_request_message_are_invalid_argument(
    channel: grpc.aio.Channel, payload: bytes
) -> None:
    raw = channel.unary_unary(
        "/swarm.v1.CollatorService/Collate",
        request_serializer=lambda b: b,
        response_deserializer=collator_pb2.CollateResponse.FromString,
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await raw(payload, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "CollateRequest" in (raised.value.details() or "")


async def test_a_domain_error_that_echoes_a_huge_value_still_arrives_cut(channel: grpc.aio.Channel) -> None:
    stub = collator_pb2_grpc.CollatorServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.Collate(collator_pb2.CollateRequest(run_id="echo"), timeout=10)
    details = raised.value.details() or ""
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, details
    assert details.startswith("run_id '\U0001f41d") and details.endswith("more characters)")
