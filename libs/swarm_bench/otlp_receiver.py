"""An OTLP/gRPC trace receiver on 127.0.0.1: what Jaeger or an OpenTelemetry Collector does with
the spans the services export, reduced to keeping them, so a test can read one run's trace as it
arrived over the wire (the services' real OTLP exporters, not an in-memory one).

``python -m swarm_bench.otlp_receiver [--port 4317]`` prints each span as it arrives, which is
handy when Jaeger is not at hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2

SERVER_KIND = 2  # opentelemetry.proto.trace.v1.Span.SPAN_KIND_SERVER
CLIENT_KIND = 3


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as exported: ids in hex, the service that sent it, its plain attributes."""

    service: str
    name: str
    kind: int
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, object]


def _value(value: common_pb2.AnyValue) -> object:
    which = value.WhichOneof("value")
    return getattr(value, which) if which in ("string_value", "bool_value", "int_value", "double_value") else None


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(
        self, received: list[ReceivedSpan], arrived: asyncio.Event, on_span: Callable[[ReceivedSpan], None] | None
    ) -> None:
        self._received = received
        self._arrived = arrived
        self._on_span = on_span

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            service = str(resource.get("service.name", ""))
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    received = ReceivedSpan(
                        service=service,
                        name=span.name,
                        kind=span.kind,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                    )
                    self._received.append(received)
                    if self._on_span is not None:
                        self._on_span(received)
        self._arrived.set()
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    """``async with OtlpReceiver() as receiver``: listening on ``receiver.endpoint``."""

    def __init__(self, port: int = 0, on_span: Callable[[ReceivedSpan], None] | None = None) -> None:
        self.spans: list[ReceivedSpan] = []
        self._arrived = asyncio.Event()
        self._server = grpc.aio.server()
        service = _TraceService(self.spans, self._arrived, on_span)
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(service, self._server)  # type: ignore[no-untyped-call]
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")

    @property
    def endpoint(self) -> str:
        """For ``OTEL_EXPORTER_OTLP_ENDPOINT`` (http:// means plaintext to the exporter)."""
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> OtlpReceiver:
        await self._server.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._server.stop(0)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        return [span for span in self.spans if span.trace_id == trace_id]

    async def wait_for(self, done: Callable[[list[ReceivedSpan]], bool], timeout_s: float) -> list[ReceivedSpan]:
        """The spans received so far once ``done`` holds for them, or when ``timeout_s`` ran out."""
        deadline = time.monotonic() + timeout_s
        while not done(self.spans) and (left := deadline - time.monotonic()) > 0:
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._arrived.wait()
        return list(self.spans)


async def _serve(port: int) -> None:
    def show(span: ReceivedSpan) -> None:
        print(f"{span.trace_id} {span.span_id} <- {span.parent_id or '-':16} {span.service:20} {span.name}", flush=True)

    async with OtlpReceiver(port, show) as receiver:
        print(f"OTLP/gRPC receiver on {receiver.endpoint}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=4317)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
