"""Prometheus metrics of one server: its own registry, its ``/metrics`` port, its RPC counts.

Each server owns a ``CollectorRegistry`` (several servers share a process in the tests and the
in-process stack, so the global default registry would mix them). The endpoint is a small HTTP/1.1
server on the event loop, not prometheus-client's thread: what must be read fresh at scrape time
(the orchestrator's queue, from the store every replica shares) is read by an ``async`` refresh
hook right before the text is rendered, on the loop that owns the store. Names, labels and units
are in docs/metrics.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from ._config import env_str
from ._errors import ConfigError
from ._tls import is_loopback

log = logging.getLogger(__name__)

METRICS_ADDR_VAR = "SWARM_METRICS_ADDR"
# Each service's default metrics port (``SWARM_METRICS_ADDR`` overrides, ``off`` disables).
DEFAULT_PORTS = {"orchestrator": 9451, "collator": 9452, "assessor": 9453, "refiner": 9454}
# Seconds buckets for RPCs and model calls: from a health check to a long completion.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
# A refresh hook that takes longer is abandoned: the scrape answers with what it has.
REFRESH_TIMEOUT_S = 5.0

Refresh = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class MetricsConfig:
    """Where a service serves ``/metrics``; ``address`` empty: nowhere (``SWARM_METRICS_ADDR=off``)."""

    address: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str], service: str) -> MetricsConfig:
        """``SWARM_METRICS_ADDR`` (default ``127.0.0.1:<the service's port>``). The page is plain
        HTTP on any address: it holds counts with bounded labels, never a task, a key or a run id."""
        default = f"127.0.0.1:{DEFAULT_PORTS[service]}"
        raw = env_str(env, METRICS_ADDR_VAR, default)
        if raw.lower() in {"off", "none", "false", "0"}:
            return cls("")
        host, sep, port = raw.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ConfigError(f"{METRICS_ADDR_VAR}={raw!r} must be HOST:PORT (port 0 picks a free one) or off")
        return cls(raw)

    @property
    def enabled(self) -> bool:
        return bool(self.address)


class RpcMetrics:
    """Counts and latency of every RPC a server answers, by method and status code."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.handled = Counter(
            "swarm_grpc_server_handled_total",
            "RPCs finished by this server, by method and gRPC status code.",
            ["method", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "swarm_grpc_server_handling_seconds",
            "Time from an RPC's arrival to its last response, by method.",
            ["method"],
            registry=registry,
            buckets=LATENCY_BUCKETS,
        )

    def observe(self, method: str, code: grpc.StatusCode, seconds: float) -> None:
        self.handled.labels(method=method, code=code.name).inc()
        self.latency.labels(method=method).observe(seconds)


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Times every RPC (health checks included: their count is the probes' rate) and counts it
    by the code it ended with. It runs outside the error mapping, so it sees the final status."""

    def __init__(self, rpc: RpcMetrics) -> None:
        self._rpc = rpc

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = str(handler_call_details.method)
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            inner = handler.unary_stream
            wrapped = self._stream(inner, method) if inspect.isasyncgenfunction(inner) else self._unary(inner, method)
            return grpc.unary_stream_rpc_method_handler(
                wrapped,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler

    def _unary(self, inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]], method: str) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            try:
                return await inner(request, context)
            finally:
                self._rpc.observe(method, _code(context), time.perf_counter() - started)

        return call

    def _stream(self, inner: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]], method: str) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            started = time.perf_counter()
            try:
                async for item in inner(request, context):
                    yield item
            finally:
                self._rpc.observe(method, _code(context), time.perf_counter() - started)

        return call


def _code(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status the call ends with: what the handler set or aborted with, else OK (a cancelled
    call whose code is unknown counts as CANCELLED)."""
    try:
        code = context.code()
    except Exception:  # the context of a call torn down under it
        code = None
    if code is None:
        return grpc.StatusCode.CANCELLED if context.cancelled() else grpc.StatusCode.OK
    if isinstance(code, grpc.StatusCode):
        return code
    return next((c for c in grpc.StatusCode if c.value[0] == code), grpc.StatusCode.UNKNOWN)


class Metrics:
    """A server's registry, its RPC metrics and its ``/metrics`` endpoint (started with the server)."""

    def __init__(self, config: MetricsConfig) -> None:
        self.config = config
        self.registry = CollectorRegistry(auto_describe=True)
        self.rpc = RpcMetrics(self.registry)
        self._refresh: list[Refresh] = []
        self._server: asyncio.Server | None = None
        self.port: int | None = None

    def on_scrape(self, refresh: Refresh) -> None:
        """Run ``refresh`` (e.g. read the queue from the store) before each scrape renders."""
        self._refresh.append(refresh)

    def interceptor(self) -> MetricsInterceptor:
        return MetricsInterceptor(self.rpc)

    async def bind(self) -> int | None:
        """Listen on the configured address now (a taken port fails start-up); None when off."""
        if not self.config.enabled:
            return None
        host, _, port = self.config.address.rpartition(":")
        host = host.strip("[]")
        try:
            self._server = await asyncio.start_server(self._serve, host, int(port), start_serving=False)
        except OSError as exc:
            raise OSError(
                f"could not bind {METRICS_ADDR_VAR}={self.config.address} ({exc.strerror or exc}): choose a free "
                "port, or off"
            ) from exc
        self.port = int(self._server.sockets[0].getsockname()[1])
        if not is_loopback(host):
            log.info("metrics served in plain HTTP on %s", self.config.address)
        return self.port

    async def start(self) -> None:
        if self._server is not None:
            await self._server.start_serving()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def render(self) -> bytes:
        """The exposition text, after every refresh hook has had its chance."""
        for refresh in self._refresh:
            try:
                async with asyncio.timeout(REFRESH_TIMEOUT_S):
                    await refresh()
            except Exception as exc:  # the other metrics are still worth answering with
                log.warning("metrics refresh failed: %s: %s", type(exc).__name__, exc)
        return generate_latest(self.registry)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(30):
                request = await reader.readline()
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    del line
            parts = request.decode("latin-1").split()
            path = parts[1].partition("?")[0] if len(parts) >= 2 else ""
            if len(parts) >= 2 and parts[0] in {"GET", "HEAD"} and path in {"/metrics", "/"}:
                body = await self.render()
                status, content_type = "200 OK", CONTENT_TYPE_LATEST
            else:
                body, status, content_type = b"only GET /metrics is served here\n", "404 Not Found", "text/plain"
            head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            writer.write(f"{head}Connection: close\r\n\r\n".encode("latin-1"))
            if parts and parts[0] != "HEAD":
                writer.write(body)
            await writer.drain()
        except (TimeoutError, ConnectionError, UnicodeDecodeError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
