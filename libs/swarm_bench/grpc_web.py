"""A small gRPC-web client on httpx: what a browser's gRPC-web transport sends, for tests and benches.

It speaks the wire format itself, so a test sees exactly what crosses the gateway: every message
is a 5-byte prefix (flag byte 0x00, 4-byte big-endian length) and its bytes; the status comes
last, as a frame with flag 0x80 holding header lines, or, when a call fails before its first
message (a "trailers-only" response), as HTTP response headers. Each message is stamped with the
monotonic time it was read off the socket, so a test can tell streaming from buffering.
"""

from __future__ import annotations

import struct
import time
from collections.abc import AsyncIterator, Mapping
from typing import TypeVar
from urllib.parse import unquote

import grpc
import httpx
from google.protobuf.message import Message

M = TypeVar("M", bound=Message)

MESSAGE_FLAG = 0x00
TRAILERS_FLAG = 0x80
CONTENT_TYPE = "application/grpc-web+proto"


def frame(payload: bytes, flag: int = MESSAGE_FLAG) -> bytes:
    return struct.pack(">BI", flag, len(payload)) + payload


class FrameReader:
    """Cuts a byte stream into (flag, payload) frames, whatever the chunk boundaries."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        frames: list[tuple[int, bytes]] = []
        while len(self._buffer) >= 5:
            flag, length = struct.unpack(">BI", self._buffer[:5])
            if len(self._buffer) < 5 + length:
                break
            frames.append((flag, self._buffer[5 : 5 + length]))
            self._buffer = self._buffer[5 + length :]
        return frames

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame (a stream that ends with some is truncated)."""
        return len(self._buffer)


def parse_trailers(payload: bytes) -> dict[str, str]:
    """A trailers frame: ``name: value`` lines separated by CRLF, names case-insensitive."""
    trailers: dict[str, str] = {}
    for line in payload.decode("utf-8", "replace").split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            trailers[name.strip().lower()] = value.strip()
    return trailers


class GrpcWebError(Exception):
    """A call that ended with a non-OK gRPC status, as the gateway delivered it."""

    def __init__(self, code: int, message: str, where: str) -> None:
        super().__init__(f"gRPC status {code} ({where}): {message}")
        self.code = code
        self.message = message
        self.where = where  # "trailers" (a frame after the messages) or "headers" (trailers-only)

    @property
    def status(self) -> grpc.StatusCode:
        return next((s for s in grpc.StatusCode if s.value[0] == self.code), grpc.StatusCode.UNKNOWN)


def _status(values: Mapping[str, str], where: str) -> GrpcWebError | None:
    code = int(values["grpc-status"])
    return None if code == 0 else GrpcWebError(code, unquote(values.get("grpc-message", "")), where)


class GrpcWebClient:
    """Calls one gRPC service at ``base_url`` through a gRPC-web gateway, with ``metadata`` (e.g.
    the caller's ``authorization``) on every call unless a call names its own."""

    def __init__(
        self, http: httpx.AsyncClient, base_url: str, service: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        self._http = http
        self._prefix = f"{base_url.rstrip('/')}/{service}/"
        self._metadata = dict(metadata or {})

    async def stream(
        self, method: str, request: Message, response_type: type[M], metadata: Mapping[str, str] | None = None
    ) -> AsyncIterator[tuple[float, M]]:
        """Each response message with its time of receipt; raises ``GrpcWebError`` on a non-OK status."""
        headers = {
            "content-type": CONTENT_TYPE,
            "x-grpc-web": "1",
            "accept": CONTENT_TYPE,
            **(self._metadata if metadata is None else metadata),
        }
        body = frame(request.SerializeToString())
        async with self._http.stream("POST", self._prefix + method, content=body, headers=headers) as response:
            if response.status_code != 200:
                raise GrpcWebError(
                    grpc.StatusCode.UNKNOWN.value[0], f"HTTP {response.status_code} from the gateway", "http"
                )
            if "grpc-status" in response.headers:
                error = _status(response.headers, "headers")
                if error is not None:
                    raise error
                return
            reader = FrameReader()
            async for chunk in response.aiter_raw():
                received = time.monotonic()
                for flag, payload in reader.feed(chunk):
                    if flag & TRAILERS_FLAG:
                        error = _status(parse_trailers(payload), "trailers")
                        if error is not None:
                            raise error
                        return
                    yield received, response_type.FromString(payload)
            truncated = f"the stream ended without trailers ({reader.pending} bytes left)"
            raise GrpcWebError(grpc.StatusCode.INTERNAL.value[0], truncated, "eof")

    async def unary(
        self, method: str, request: Message, response_type: type[M], metadata: Mapping[str, str] | None = None
    ) -> M:
        """The one response message; raises ``GrpcWebError`` on a non-OK status."""
        replies = [reply async for _, reply in self.stream(method, request, response_type, metadata)]
        if len(replies) != 1:
            raise GrpcWebError(grpc.StatusCode.INTERNAL.value[0], f"{len(replies)} messages for a unary call", "body")
        return replies[0]
