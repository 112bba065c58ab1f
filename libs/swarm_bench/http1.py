"""Just enough HTTP/1.1 for the OpenAI-compatible servers Swarm runs itself (replay, test fakes).

Both speak keep-alive, JSON answers and chunked server-sent events to httpx; one copy of the
wire format keeps them from drifting apart.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
}


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


def openai_error(message: str, kind: str) -> dict[str, Any]:
    """An error body shaped like OpenAI's."""
    return {"error": {"message": message, "type": kind, "code": None}}


def stream_pieces(text: str) -> list[str]:
    """Split like a tokenizer would stream: words with their leading whitespace."""
    return re.findall(r"\s*\S+|\s+", text)


def response_head(status: int, headers: Sequence[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}", *(f"{k}: {v}" for k, v in headers)]
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
