"""Client channels that carry the trace context to the next hop."""

from __future__ import annotations

import grpc
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace import TracerProvider


def open_channel(target: str, tracer_provider: TracerProvider) -> grpc.aio.Channel:
    """An insecure ``grpc.aio`` channel to ``target`` with OpenTelemetry client interceptors."""
    return grpc.aio.insecure_channel(
        target,
        interceptors=aio_client_interceptors(tracer_provider=tracer_provider),  # type: ignore[no-untyped-call]
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
        ],
    )
