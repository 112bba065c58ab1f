"""The CLI is a run's first hop: ``swarm run`` opens the span every later hop hangs under, and its
calls carry the trace to the orchestrator (W3C ``traceparent`` metadata), so one trace covers the
caller, the orchestrator, every instance call and the stages (docs/tracing.md).

Spans leave the process only with the standard ``OTEL_*`` variables set (``configure_tracing``);
without them nothing is exported and the cost is a few objects per command.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_client_interceptors
from opentelemetry.sdk.trace import TracerProvider

from swarmlib import configure_tracing, exports_traces

SERVICE_NAME = "swarm-cli"


def provider() -> TracerProvider:
    return configure_tracing(SERVICE_NAME, os.environ)


def client_interceptors() -> list[Any]:
    """Interceptors that start a client span per call and send the trace along."""
    return list(aio_client_interceptors(tracer_provider=provider()))  # type: ignore[no-untyped-call]


@contextlib.contextmanager
def first_hop(name: str) -> Iterator[trace.Span]:
    """The root span of what this command asks for; its trace id is printed when it is exported."""
    tracer = provider().get_tracer("swarm_cli")
    with tracer.start_as_current_span(name) as span:
        yield span
    if exporting():
        print(f"trace: {span.get_span_context().trace_id:032x}", file=sys.stderr)


def exporting() -> bool:
    return exports_traces(os.environ)


def flush() -> None:
    """Send what is buffered before the process exits (the batch processor would drop it)."""
    provider().force_flush(5_000)
