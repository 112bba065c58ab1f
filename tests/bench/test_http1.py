"""The HTTP/1.1 server base: keep-alive requests, a body over the limit, and a stop that does not
wait for connections that are idle or whose handler waits on purpose."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import ClassVar

import httpx
import pytest

from swarm_bench.http1 import HttpRequest, HttpServer, send_json


@dataclass
class EchoServer(HttpServer):
    """Answers every request with its method, path and body; ``/hang`` waits until the server stops."""

    seen: list[HttpRequest] = field(default_factory=list)
    max_body: ClassVar[int | None] = 16

    def __post_init__(self) -> None:
        super().__post_init__()
        self.hanging = asyncio.Event()

    async def handle(self, request: HttpRequest, writer: asyncio.StreamWriter) -> bool:
        self.seen.append(request)
        if request.path == "/hang":
            self.hanging.set()
            await self._stopping.wait()
            return False
        answer = {"method": request.method, "path": request.path, "body": request.body.decode()}
        await send_json(writer, 200, answer, request.keep_alive)
        return request.keep_alive


@pytest.fixture
async def server() -> AsyncIterator[EchoServer]:
    async with EchoServer() as echo:
        yield echo


async def test_requests_on_one_keep_alive_connection(server: EchoServer) -> None:
    assert server.port > 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        first = await http.post("/a", content=b"one")
        second = await http.get("/b?x=1")
    assert first.json() == {"method": "POST", "path": "/a", "body": "one"}
    assert second.json() == {"method": "GET", "path": "/b?x=1", "body": ""}
    assert first.headers["connection"] == "keep-alive" and first.reason_phrase == "OK"
    assert [r.headers["host"] for r in server.seen] == [f"127.0.0.1:{server.port}"] * 2


async def test_a_body_over_the_limit_is_refused_and_the_connection_closed(server: EchoServer) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        refused = await http.post("/a", content=b"x" * 17)
        fine = await http.post("/a", content=b"x" * 16)
    assert refused.status_code == 400 and refused.headers["connection"] == "close"
    assert "over the limit of 16" in refused.text
    assert fine.status_code == 200 and [r.body for r in server.seen] == [b"x" * 16]


async def test_stop_closes_idle_and_hanging_connections_at_once() -> None:
    server = EchoServer()
    await server.start()
    idle_reader, idle = await asyncio.open_connection("127.0.0.1", server.port)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}")
    hanging = asyncio.create_task(http.get("/hang"))
    await asyncio.wait_for(server.hanging.wait(), 5)
    started = time.monotonic()
    await server.stop()
    assert time.monotonic() - started < 1.0
    with pytest.raises(httpx.HTTPError):
        await hanging
    assert await asyncio.wait_for(idle_reader.read(), 1) == b""  # closed by the server
    idle.close()
    await http.aclose()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", server.port)
