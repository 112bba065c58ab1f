"""Just enough HTTP/1.1 for the servers Swarm runs itself: replay instances and the stand-ins for
APIs outside the machine (a fake OpenAI-compatible server, a fake Runloop API).

They speak keep-alive, JSON answers and chunked server-sent events to httpx, and must stop at once
with connections still open (a request that hangs on purpose included); one copy of the wire format
and of the listener keeps them from drifting apart.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import http
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self


class BodyTooLargeError(ValueError):
    """The request announced a body over the server's limit."""


@dataclass(frozen=True)
class HttpRequest:
    """One request: header names lower-cased, body unparsed."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        return self.headers.get("connection", "").lower() != "close"


async def read_request(reader: asyncio.StreamReader, max_body: int | None = None) -> HttpRequest | None:
    """The next request on the connection, or None when the client closed it."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _version = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    if max_body is not None and length > max_body:
        raise BodyTooLargeError(f"request body of {length} bytes is over the limit of {max_body}")
    body = await reader.readexactly(length) if length else b""
    return HttpRequest(method, path, headers, body)


def response_head(status: int, headers: Sequence[tuple[str, str]]) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_bytes(
    writer: asyncio.StreamWriter,
    status: int,
    content_type: str,
    payload: bytes,
    keep_alive: bool,
    extra: Mapping[str, str] | None = None,
) -> None:
    headers = [
        ("Content-Type", content_type),
        ("Content-Length", str(len(payload))),
        ("Connection", "keep-alive" if keep_alive else "close"),
        *(extra or {}).items(),
    ]
    writer.write(response_head(status, headers) + payload)
    await writer.drain()


async def send_json(
    writer: asyncio.StreamWriter,
    status: int,
    payload: object,
    keep_alive: bool,
    extra: Mapping[str, str] | None = None,
) -> None:
    await send_bytes(writer, status, "application/json", json.dumps(payload).encode(), keep_alive, extra)


def event_stream_head(keep_alive: bool) -> bytes:
    """Response head of a chunked ``text/event-stream``."""
    return response_head(
        200,
        [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("Transfer-Encoding", "chunked"),
            ("Connection", "keep-alive" if keep_alive else "close"),
        ],
    )


def chunk(data: bytes) -> bytes:
    """One HTTP chunk; empty ``data`` is the terminating chunk."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def sse_chunk(payload: object) -> bytes:
    """One server-sent ``data:`` event with a JSON payload, as an HTTP chunk."""
    return chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")


@dataclass(eq=False)
class _Connection:
    writer: asyncio.StreamWriter
    task: asyncio.Task[Any] | None


class HttpServer(abc.ABC):
    """A keep-alive HTTP/1.1 listener on ``host:port`` (port 0: ephemeral, read ``port`` after ``start``).

    A subclass answers one request in ``handle``. ``stop`` closes the listener and every open
    connection at once, whatever its handler waits for: handlers that wait on purpose (a hanging
    answer, a long-poll) wait for ``_stopping`` as well. Subclasses that are dataclasses declare
    ``host`` and ``port`` fields and call ``super().__post_init__()``.
    """

    host: str = "127.0.0.1"
    port: int = 0
    max_body: ClassVar[int | None] = None  # larger bodies go to ``body_too_large``

    def __post_init__(self) -> None:
        self._listener: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._stopping = asyncio.Event()

    @abc.abstractmethod
    async def handle(self, request: HttpRequest, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection must close afterwards."""

    async def body_too_large(self, writer: asyncio.StreamWriter, error: BodyTooLargeError) -> None:
        """Answer a request whose body is over ``max_body`` (its connection closes afterwards)."""
        await send_bytes(writer, 400, "text/plain; charset=utf-8", str(error).encode(), False)

    def wake(self) -> None:
        """Called by ``stop`` once the listener is closed: end whatever else handlers wait for."""
        return  # by default handlers wait only for their connection and ``_stopping``

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        self._listener = await asyncio.start_server(self._accept, self.host, self.port)
        self.port = self._listener.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Close the listener and every open connection (hanging ones included) at once."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()
        self.wake()
        connections = list(self._connections)
        for conn in connections:
            conn.writer.close()
        # Handlers notice the closed transport or the stop event and return on their own;
        # cancelling them instead makes asyncio 3.11 log spurious CancelledError tracebacks.
        tasks = [c.task for c in connections if c.task is not None and c.task is not asyncio.current_task()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for task in pending:
                task.cancel()
        if self._listener is not None:
            await self._listener.wait_closed()
            self._listener = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = _Connection(writer, asyncio.current_task())
        self._connections.add(conn)
        try:
            while not self._stopping.is_set():
                try:
                    request = await read_request(reader, self.max_body)
                except BodyTooLargeError as exc:
                    await self.body_too_large(writer, exc)
                    break
                if request is None or not await self.handle(request, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # the client went away or sent something that is not HTTP: drop the connection
        finally:
            self._connections.discard(conn)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
