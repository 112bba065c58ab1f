"""Server bootstrap shared by every service: interceptors, health, reflection, graceful drain."""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters
from opentelemetry.sdk.trace import TracerProvider

from ._errors import SwarmError, status_for
from ._health_port import health_only_server
from ._tls import Transport, bind

log = logging.getLogger(__name__)


class ErrorMappingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Turns a ``SwarmError`` raised anywhere in a handler into its gRPC status and message."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            # grpc.aio picks the streaming style by the handler's type: an async generator yields
            # responses, a coroutine (health's Watch) writes them with ``context.write``.
            inner = handler.unary_stream
            wrapped = _wrap_stream(inner) if inspect.isasyncgenfunction(inner) else _wrap_unary(inner)
            return grpc.unary_stream_rpc_method_handler(
                wrapped,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def _wrap_unary(inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]) -> Any:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await inner(request, context)
        except SwarmError as exc:
            await context.abort(status_for(exc), str(exc))

    return call


def _wrap_stream(inner: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]) -> Any:
    async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for item in inner(request, context):
                yield item
        except SwarmError as exc:
            await context.abort(status_for(exc), str(exc))

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
    ) -> None:
        self.grpc = server
        self.health = health_servicer
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

    async def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new calls, let running ones finish within ``grace`` seconds, then clean up."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        await self.grpc.stop(grace)
        if self.health_port is not None:  # kept up through the drain, so probes see NOT_SERVING
            await self.health_port[0].stop(None)
        for callback in reversed(self._on_stop):
            try:
                await callback()
            except Exception:
                log.exception("clean-up after stop failed")

    async def wait_for_termination(self) -> None:
        await self.grpc.wait_for_termination()


async def build_server(
    *,
    service_names: Sequence[str],
    register: Callable[[grpc.aio.Server], None],
    address: str,
    tracer_provider: TracerProvider,
    options: Sequence[tuple[str, Any]] = (),
    transport: Transport | None = None,
) -> tuple[SwarmServer, int]:
    """Create a server with tracing and error mapping, health and reflection; bind ``address``
    with the TLS of ``transport`` (none: plaintext, loopback only) and its health-only port.

    ``address`` like ``127.0.0.1:0`` binds an ephemeral port (tests); the bound port is returned.
    """
    transport = transport or Transport()
    server = grpc.aio.server(
        interceptors=[
            # Health checks are not traced: probes would flood the traces, and the interceptor only
            # handles async-generator streams, not the coroutine-style Watch of the health servicer.
            aio_server_interceptor(  # type: ignore[no-untyped-call]
                tracer_provider=tracer_provider, filter_=filters.negate(filters.health_check())
            ),
            ErrorMappingInterceptor(),
        ],
        options=[
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
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
    return SwarmServer(server, health_servicer, health_port), port


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
