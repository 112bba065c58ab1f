"""Any RPC of a service, called from its descriptor over a real channel, and what its answer must be.

The fuzz tests do not name RPCs: ``rpcs`` lists every method a service's descriptor declares, so an
RPC added to a ``.proto`` is called as soon as the stubs are regenerated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, ServiceDescriptor
from google.protobuf.message import Message

# What a deliberate refusal may be. INTERNAL and UNKNOWN never are: they mean a bug reached the caller.
DELIBERATE = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        # A run without a quorum, a stage or instance that failed (the fuzzed timeouts make some fail).
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)
# What grpc says when the *client's* deadline ran out: the server hung instead of answering.
CLIENT_DEADLINE = "Deadline Exceeded"


@dataclass(frozen=True)
class Rpc:
    service: str
    name: str
    input: Descriptor
    output: Descriptor
    streaming: bool

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    def __str__(self) -> str:
        return f"{self.service.rsplit('.', 1)[-1]}.{self.name}"


def rpcs(*services: ServiceDescriptor) -> list[Rpc]:
    """Every method of the services; none of them streams requests (the contract has no such RPC)."""
    found = []
    for service in services:
        for method in service.methods:
            assert not method.client_streaming, f"{method.full_name}: client streaming is not fuzzed yet"
            found.append(
                Rpc(service.full_name, method.name, method.input_type, method.output_type, method.server_streaming)
            )
    return found


@dataclass
class Outcome:
    """How a call ended: its status and message, and every response it got before that."""

    code: grpc.StatusCode
    details: str
    responses: list[Message] = field(default_factory=list)


async def invoke(
    channel: grpc.aio.Channel,
    rpc: Rpc,
    request: Message,
    metadata: Sequence[tuple[str, str]] = (),
    timeout: float = 60.0,
) -> Outcome:
    response_type = message_factory.GetMessageClass(rpc.output)
    options = {"request_serializer": _serialize, "response_deserializer": response_type.FromString}
    responses: list[Message] = []
    try:
        if rpc.streaming:
            async for response in channel.unary_stream(rpc.path, **options)(
                request, metadata=tuple(metadata), timeout=timeout
            ):
                responses.append(response)
        else:
            responses.append(
                await channel.unary_unary(rpc.path, **options)(request, metadata=metadata, timeout=timeout)
            )
    except grpc.aio.AioRpcError as exc:
        return Outcome(exc.code(), exc.details() or "", responses)
    return Outcome(grpc.StatusCode.OK, "", responses)


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def field_names(descriptor: Descriptor) -> set[str]:
    """Every field name in the message and the messages it holds: what a refusal may name."""
    names: set[str] = set()
    seen: set[str] = set()
    pending = [descriptor]
    while pending:
        current = pending.pop()
        if current.full_name in seen:
            continue
        seen.add(current.full_name)
        for fd in current.fields:
            names.add(fd.name)
            if fd.message_type is not None:
                pending.append(fd.message_type)
    return names


def check_answer(rpc: Rpc, outcome: Outcome, extra_names: Iterable[str] = ()) -> None:
    """The status is OK or deliberate, and a refusal says what to fix, naming what was wrong."""
    where = f"{rpc}: {outcome.code.name} {outcome.details!r}"
    assert outcome.code not in {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}, where
    if outcome.code == grpc.StatusCode.OK:
        return
    assert outcome.code in DELIBERATE, where
    assert outcome.details != CLIENT_DEADLINE, f"{rpc}: the server did not answer within the client's deadline"
    assert "metadata size exceeds" not in outcome.details, f"{where}: the server's message was too long to arrive"
    assert len(outcome.details.strip()) >= 10, f"{where}: a refusal must say what to fix"
    if outcome.code == grpc.StatusCode.INVALID_ARGUMENT:
        names = field_names(rpc.input) | set(extra_names)
        assert any(name in outcome.details for name in names), (
            f"{where}: the message names no field of {rpc.input.name}"
        )
