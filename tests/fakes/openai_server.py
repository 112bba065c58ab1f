"""A fake OpenAI-compatible LLM server for tests, on plain asyncio (no extra dependencies).

Real models are slow and nondeterministic, and the failures that matter (5xx, 429, hangs,
streams cut mid-answer, garbage in the stream) are hard to provoke on demand. This server is
built on the replay server's HTTP/1.1 base and OpenAI payloads (``swarm_bench.http1``,
``swarm_bench.openai_wire``), so the code under test cannot tell it from the real thing. Failure
modes are switched per server, at runtime, or per request through a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from swarm_bench.http1 import HttpRequest, HttpServer, chunk, event_stream_head, send_bytes, send_json
from swarm_bench.openai_wire import ChatReply, error_body, estimate_tokens, model_list, wants_usage

from .replies import FIB_REPLY

Messages = list[dict[str, Any]]
Reply = str | Callable[[Messages], str]


class Behaviour(enum.Enum):
    """How the server treats a request."""

    ANSWER = "answer"
    HTTP_500 = "http_500"
    HTTP_429 = "http_429"
    HANG = "hang"
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    EMPTY = "empty"
    SLOW = "slow"


class Headers(Mapping[str, str]):
    """Request headers with case-insensitive lookup, as HTTP defines them."""

    def __init__(self, items: Iterable[tuple[str, str]]) -> None:
        self._items = {key.lower(): value for key, value in items}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it, plus the behaviour it was given."""

    method: str
    path: str
    headers: Headers
    body: Any
    behaviour: Behaviour

    @property
    def messages(self) -> Messages:
        if isinstance(self.body, dict) and isinstance(self.body.get("messages"), list):
            return list(self.body["messages"])
        return []

    @property
    def prompt(self) -> str:
        """All message contents joined, for ``in`` assertions."""
        return "\n".join(str(m.get("content", "")) for m in self.messages)


@dataclass
class FakeLLMServer(HttpServer):
    """OpenAI-compatible ``/v1/models`` and ``/v1/chat/completions`` on 127.0.0.1, ephemeral port.

    ``behaviour`` applies to every request unless ``script`` (a queue, consumed one entry per
    request on any route) holds an entry. ``reply`` is the answer text or a function of the
    request's messages. ``chunk_delay`` is the pause between chunks for ``Behaviour.SLOW``;
    ``think_s`` maps a request's ``X-Swarm-Purpose`` to a pause before answering it, as a model
    reading a long prompt would take.
    """

    model: str = "qwen"
    reply: Reply = FIB_REPLY
    behaviour: Behaviour = Behaviour.ANSWER
    script: deque[Behaviour] = field(default_factory=deque)
    chunk_delay: float = 0.05
    think_s: dict[str, float] = field(default_factory=dict)
    requests: list[RecordedRequest] = field(default_factory=list)
    # When set, chat requests wait for it before answering (a model busy until the test says so).
    gate: asyncio.Event | None = None
    # Chat requests being answered now, and the most there ever were at once.
    in_flight: int = 0
    peak_in_flight: int = 0
    # Serve llama.cpp's ``POST /tokenize`` (one token per whitespace-separated word, so a test can
    # tell it from the chars/4 approximation).
    tokenizer: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        self.script = deque(self.script)

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def enqueue(self, *behaviours: Behaviour) -> None:
        """Give the next requests these behaviours, in order; then fall back to ``behaviour``."""
        self.script.extend(behaviours)

    async def handle(self, request: HttpRequest, writer: asyncio.StreamWriter) -> bool:
        method, path, raw = request.method, request.path, request.body
        headers = Headers(request.headers.items())
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        behaviour = self.script.popleft() if self.script else self.behaviour
        self.requests.append(RecordedRequest(method, path, headers, body, behaviour))
        keep_alive = headers.get("connection", "").lower() != "close"

        if behaviour is Behaviour.HANG:
            await self._stopping.wait()
            return False
        pause = self.think_s.get(headers.get("x-swarm-purpose", ""), 0.0)
        if pause:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), pause)
            if self._stopping.is_set():
                return False
        if behaviour is Behaviour.HTTP_500:
            await send_json(writer, 500, error_body("internal server error (fake)", "server_error"), keep_alive)
            return keep_alive
        if behaviour is Behaviour.HTTP_429:
            error = error_body("rate limit reached (fake)", "rate_limit_exceeded")
            await send_json(writer, 429, error, keep_alive, extra={"Retry-After": "0"})
            return keep_alive

        route = path.split("?", 1)[0].rstrip("/")
        if self.tokenizer and method == "POST" and route == "/tokenize" and isinstance(body, dict):
            words = str(body.get("content", "")).split()
            await send_json(writer, 200, {"tokens": list(range(len(words)))}, keep_alive)
            return keep_alive
        if method == "GET" and route.endswith("/models"):
            await send_json(writer, 200, model_list(self.model, "fake"), keep_alive)
            return keep_alive
        if method == "POST" and route.endswith("/chat/completions"):
            if not isinstance(body, dict):
                await send_json(writer, 400, error_body("body must be a JSON object", "invalid_request_error"), False)
                return False
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                if self.gate is not None:
                    await self.gate.wait()
                return await self._chat(writer, body, behaviour, keep_alive)
            finally:
                self.in_flight -= 1
        await send_json(writer, 404, error_body(f"no route {method} {path}", "not_found"), keep_alive)
        return keep_alive

    async def _chat(
        self, writer: asyncio.StreamWriter, body: dict[str, Any], behaviour: Behaviour, keep_alive: bool
    ) -> bool:
        messages: Messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        text = "" if behaviour is Behaviour.EMPTY else self._reply_text(messages)
        prompt = "".join(str(m.get("content", "")) for m in messages)
        reply = ChatReply(f"chatcmpl-{uuid.uuid4().hex[:24]}", self.model, text, estimate_tokens(prompt), "fp_fake")

        if not body.get("stream"):
            if behaviour is Behaviour.MALFORMED:
                await send_bytes(writer, 200, "application/json", b'{"choices": [ not json', keep_alive)
            else:
                await send_json(writer, 200, reply.completion(), keep_alive)
            return keep_alive

        stream = reply.sse(wants_usage(body))
        writer.write(event_stream_head(keep_alive))
        await writer.drain()
        if behaviour is Behaviour.MALFORMED:
            await _send(writer, chunk(b'data: {not json\n\ndata: {"choices": [\n\n'))
            writer.close()
            return False
        await _send(writer, stream.opening)
        if behaviour is Behaviour.TRUNCATED:
            for piece in stream.pieces[: max(1, len(stream.pieces) // 2)]:
                await _send(writer, piece)
            # Close without the terminating chunk, finish_reason or [DONE]: a crashed server.
            writer.close()
            return False
        for piece in stream.pieces:
            if behaviour is Behaviour.SLOW:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self.chunk_delay)
                if self._stopping.is_set():
                    return False
            await _send(writer, piece)
        for closing in stream.closing:
            await _send(writer, closing)
        return keep_alive

    def _reply_text(self, messages: Messages) -> str:
        return self.reply(messages) if callable(self.reply) else self.reply


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()
