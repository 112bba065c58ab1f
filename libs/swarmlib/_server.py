"""Server bootstrap shared by every service: interceptors, health, reflection, graceful drain."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from opentelemetry.sdk.trace import TracerProvider

from ._errors import SwarmError, error_id, internal_error_message, status_for
from ._health_port import health_only_server
from ._metrics import Metrics
from ._tls import Transport, bind

log = logging.getLogger(__name__)


ERROR_ID_METADATA = "swarm-error-id"


class _LeftStreamDetachFilter(logging.Filter):
    """Drops OpenTelemetry's "Failed to detach context" for a server stream its client left.

    When a client hangs up on a streaming call (a closed browser tab, an interrupted CLI),
    grpc.aio stops iterating the traced response generator without closing it; the event loop
    closes it later from another context, where the token of the span's context cannot be reset,
    and OpenTelemetry logs an ERROR with two tracebacks (opentelemetry-python-contrib#2357). The
    span still ends and nothing is lost: only that one case (a ``ValueError`` raised while the
    generator handled ``GeneratorExit``) is dropped; any other failure to detach still logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage() != "Failed to detach context" or not record.exc_info:
            return True
        exc = record.exc_info[1]
        return not (isinstance(exc, ValueError) and isinstance(exc.__context__, GeneratorExit))


_LEFT_STREAM_DETACH = _LeftStreamDetachFilter()


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Turns what a handler raises into a status the caller can act on, and nothing more.

    A ``SwarmError`` becomes its status and message (``status_for``). A request that does not
    decode becomes ``INVALID_ARGUMENT``. Anything else is a bug whose text may hold SQL, its
    parameters, a task or a stored document: the caller gets ``INTERNAL`` with an error id (also
    in the ``swarm-error-id`` trailing metadata) and the log gets the id with the traceback.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = str(handler_call_details.method)
        deserializer = _tolerant(handler.request_deserializer)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method),
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            # grpc.aio picks the streaming style by the handler's type: an async generator yields
            # responses, a coroutine (health's Watch) writes them with ``context.write``.
            inner = handler.unary_stream
            wrapped = _wrap_stream(inner, method) if inspect.isasyncgenfunction(inner) else _wrap_unary(inner, method)
            return grpc.unary_stream_rpc_method_handler(
                wrapped,
                request_deserializer=deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


class _Undecodable:
    """Stands in for a request whose bytes are not the expected message, so the handler refuses it."""

    def __init__(self, why: str) -> None:
        self.why = why


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def decode(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as exc:
            return _Undecodable(str(exc))

    return decode


async def _refuse_undecodable(request: Any, context: grpc.aio.ServicerContext) -> None:
    if isinstance(request, _Undecodable):
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"the request is not a valid protobuf message ({request.why}): send it as the service's .proto defines",
        )


async def _abort_for(exc: Exception, method: str, context: grpc.aio.ServicerContext) -> NoReturn:
    """Abort the call for ``exc``: a domain error with its own status, anything else as INTERNAL."""
    if isinstance(exc, SwarmError):
        await context.abort(status_for(exc), _bounded(str(exc)))
    if isinstance(exc, NotImplementedError) and context.code() == grpc.StatusCode.UNIMPLEMENTED:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not implemented by this server")
    log.error("error %s in %s: unexpected %s", error_id(exc), method, type(exc).__name__, exc_info=exc)
    await context.abort(
        grpc.StatusCode.INTERNAL,
        internal_error_message(exc),
        trailing_metadata=((ERROR_ID_METADATA, error_id(exc)),),
    )
    raise AssertionError("unreachable: context.abort raises")


# The message travels in the grpc-message trailer, percent-encoded; past gRPC's metadata limit
# (8 KiB soft, 16 KiB hard) the caller would get RESOURCE_EXHAUSTED instead of the message.
_MAX_MESSAGE_BYTES = 4096


def _bounded(message: str) -> str:
    """The message, cut where its encoded size would pass ``_MAX_MESSAGE_BYTES`` (it echoed a huge value)."""
    size = 0
    for index, char in enumerate(message):
        size += 1 if " " <= char <= "~" and char != "%" else 3 * len(char.encode("utf-8", "replace"))
        if size > _MAX_MESSAGE_BYTES:
            return f"{message[:index]}... (cut: {len(message) - index} more characters)"
    return message


def _wrap_unary(inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], method: str) -> Any:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _refuse_undecodable(request, context)
        try:
            return await inner(request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort_for(exc, method, context)

    return call


def _wrap_stream(inner: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]], method: str) -> Any:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        await _refuse_undecodable(request, context)
        try:
            async for item in inner(request, context):
                yield item
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort_for(exc, method, context)

    return call


class SwarmServer:
    """A started-or-not ``grpc.aio`` server with its health servicer and clean-up hooks.

    ``create_server(config)`` of every service returns one of these with its bound port; the
    wrapper exists so that stopping also flips health to NOT_SERVING (load balancers stop sending
    traffic first) and releases what the service opened (database engine, HTTP clients).
    """

    def __init__(
        self,
        server: grpc.aio.Server,
        health_servicer: health.aio.HealthServicer,
        health_port: tuple[grpc.aio.Server, int] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.grpc = server
        self.health = health_servicer
        # Its registry and ``/metrics`` endpoint (``metrics.port``: bound, or None when off).
        self.metrics = metrics
        # The plaintext health-only port (``SWARM_HEALTH_ADDR``) and its bound port, if any.
        self.health_port = health_port
        self._on_stop: list[Callable[[], Awaitable[None]]] = []
        self._stopped = False

    def on_stop(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Register a coroutine to run after the server has drained."""
        self._on_stop.append(callback)

    async def start(self) -> None:
        await self.grpc.start()
        if self.health_port is not None:
            await self.health_port[0].start()
        if self.metrics is not None:
            await self.metrics.start()

    async def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new calls, let running ones finish within ``grace`` seconds, then clean up."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(grace)
        if self.health_port is not None:  # kept up through the drain, so probes see NOT_SERVING
            await self.health_port[0].stop(None)
        if self.metrics is not None:  # scraped through the drain too: the last counts are seen
            await self.metrics.stop()
        for callback in reversed(self._on_stop):
            try:
                await callback()
            except Exception:
                log.exception("clean-up after stop failed")

    async def wait_for_termination(self) -> None:
        await self.grpc.wait_for_termination()


MAX_CONNECTION_AGE_MS = 300_000


async def build_server(
    *,
    service_names: Sequence[str],
    register: Callable[[grpc.aio.Server], None],
    address: str,
    tracer_provider: TracerProvider,
    options: Sequence[tuple[str, Any]] = (),
    transport: Transport | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    metrics: Metrics | None = None,
) -> tuple[SwarmServer, int]:
    """Create a server with tracing and error mapping, health and reflection; bind ``address``
    with the TLS of ``transport`` (none: plaintext, loopback only) and its health-only port.

    ``interceptors`` run inside the error mapping (what they raise reaches the caller as its
    status), e.g. the orchestrator's authentication.

    ``metrics`` counts and times every RPC (outermost, so it sees the final status) and its
    ``/metrics`` endpoint is bound here and served from ``start`` (docs/metrics.md).

    ``address`` like ``127.0.0.1:0`` binds an ephemeral port (tests); the bound port is returned.
    """
    transport = transport or Transport()
    logging.getLogger("opentelemetry.context").addFilter(_LEFT_STREAM_DETACH)  # once: the same filter
    server = grpc.aio.server(
        interceptors=[
            *([metrics.interceptor()] if metrics is not None else []),
            # Health checks are not traced: probes would flood the traces, and the interceptor only
            # handles async-generator streams, not the coroutine-style Watch of the health servicer.
            aio_server_interceptor(  # type: ignore[no-untyped-call]
                tracer_provider=tracer_provider, filter_=filters.negate(filters.health_check())
            ),
            ErrorMappingInterceptor(),
            *interceptors,
        ],
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            # Clients re-resolve a headless Service's replicas only when a connection ends: a GOAWAY
            # after this long makes them reconnect and spread over new replicas. Calls in flight on
            # the old connection finish (the grace is unbounded, so an hour-long run is not cut).
            ("grpc.max_connection_age_ms", MAX_CONNECTION_AGE_MS),
            *options,
        ],
    )
    register(server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in (*service_names, ""):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection((*service_names, reflection.SERVICE_NAME, health.SERVICE_NAME), server)
    port = bind(server, address, transport.tls)
    log.info("serving %s on %s", transport.tls.describe(), address)
    health_port = None
    if transport.health_address:
        health_port = await health_only_server(health_servicer, transport.health_address)
        log.info("health checks only, plaintext, on %s", transport.health_address)
    if metrics is not None and await metrics.bind() is not None:
        log.info("metrics on http://%s/metrics (port %s)", metrics.config.address, metrics.port)
    return SwarmServer(server, health_servicer, health_port, metrics), port


async def serve_until_terminated(server: SwarmServer, grace: float) -> None:
    """Start the server and run until SIGTERM or SIGINT, then drain gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    await stop.wait()
    log.info("signal received; draining for up to %.1fs", grace)
    await server.stop(grace)
