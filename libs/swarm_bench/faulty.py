"""An OpenAI-compatible instance that fails at random, the way real ones do, and says how it failed.

The chaos suite (tests/chaos) and the soak bench (bench/soak.py) need instances that answer right
most of the time and otherwise fail in every way the swarm must survive: HTTP 500, 503 and 429,
a request that hangs past the instance timeout, garbage in the event stream, a stream without
``[DONE]``, one cut mid-answer, a connection reset mid-response, an empty answer. Which fault a
request meets is drawn from a seeded RNG (the n-th request of a server with a given seed always
meets the same fault), at configurable rates; every request is recorded with the fault it met,
the purpose and run id the swarm sent with it, so a test can tell which fault each attempt met
and check that every kind occurred. ``GET /v1/models`` (the health probe) always answers: the
faults are the answers', and a pool that marks an instance unhealthy brings it back on its probe.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import random
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .http1 import HttpRequest, HttpServer, chunk, event_stream_head, response_head, send_bytes, send_json
from .openai_wire import ChatReply, error_body, estimate_tokens, model_list, wants_usage

Messages = list[dict[str, Any]]
Reply = str | Callable[[Messages], str]

PURPOSE_HEADER = "x-swarm-purpose"
RUN_HEADER = "x-swarm-run-id"


class Fault(enum.Enum):
    """What a request meets; ``NONE`` is a right answer."""

    NONE = "none"
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    HTTP_429 = "http_429"
    HANG = "hang"  # no byte of an answer for ``hang_s`` (longer than the instance timeout)
    GARBAGE = "garbage"  # a stream whose events are not JSON (a whole body that is not JSON)
    NO_DONE = "no_done"  # a stream that ends cleanly without finish_reason or [DONE]
    CUT = "cut"  # the connection closed half-way through the answer, no terminating chunk
    DROP = "drop"  # the connection reset (RST) right after the response head
    EMPTY = "empty"  # a well-formed answer with no content


FAULTS: tuple[Fault, ...] = tuple(f for f in Fault if f is not Fault.NONE)


@dataclass(frozen=True)
class FaultRates:
    """The probability of each fault per chat request; the rest answer right."""

    rates: Mapping[Fault, float]

    def __post_init__(self) -> None:
        total = sum(self.rates.values())
        if any(r < 0 for r in self.rates.values()) or total > 1.0 + 1e-9 or Fault.NONE in self.rates:
            raise ValueError(f"fault rates must be >= 0, sum to at most 1 and not name NONE: {dict(self.rates)}")

    @classmethod
    def uniform(cls, total: float, faults: tuple[Fault, ...] = FAULTS) -> FaultRates:
        """``total`` spread evenly over ``faults`` (every kind by default)."""
        return cls({fault: total / len(faults) for fault in faults})

    @property
    def total(self) -> float:
        return sum(self.rates.values())

    def draw(self, rng: random.Random) -> Fault:
        point = rng.random()
        for fault, rate in self.rates.items():
            if point < rate:
                return fault
            point -= rate
        return Fault.NONE


@dataclass(frozen=True)
class FaultRecord:
    """One chat request as the server saw it and the fault it met."""

    index: int  # the n-th chat request of this server, from 0
    purpose: str  # X-Swarm-Purpose: solve, tests, refine, ...
    run_id: str  # X-Swarm-Run-Id, empty when not sent
    stream: bool
    fault: Fault


@dataclass
class FaultyLLMServer(HttpServer):
    """``/v1/models`` and ``/v1/chat/completions`` on 127.0.0.1 (ephemeral port), faulty at ``rates``.

    ``reply`` is the right answer: a text or a function of the request's messages. ``hang_s``
    bounds a hang (the server's connection is released afterwards, so a long soak does not
    pile up sockets); keep it above the instance timeout so the swarm times out first.
    """

    name: str = "faulty"
    reply: Reply = "```python\ndef add(a, b):\n    return a + b\n```\n"
    rates: FaultRates = field(default_factory=lambda: FaultRates({}))
    seed: int = 0
    hang_s: float = 30.0
    model: str = "qwen"
    log: list[FaultRecord] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._rng = random.Random(self.seed)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def counts(self) -> Counter[Fault]:
        return Counter(record.fault for record in self.log)

    async def handle(self, request: HttpRequest, writer: asyncio.StreamWriter) -> bool:
        keep_alive = request.keep_alive
        route = request.path.split("?", 1)[0].rstrip("/")
        if request.method == "GET" and route.endswith("/models"):
            await send_json(writer, 200, model_list(self.model, "faulty"), keep_alive)
            return keep_alive
        if request.method != "POST" or not route.endswith("/chat/completions"):
            await send_json(writer, 404, error_body(f"no route {request.method} {request.path}", "not_found"), False)
            return False
        try:
            body = json.loads(request.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            await send_json(writer, 400, error_body("body must be a JSON object", "invalid_request_error"), False)
            return False
        fault = self.rates.draw(self._rng)
        stream = bool(body.get("stream"))
        headers = request.headers
        self.log.append(
            FaultRecord(len(self.log), headers.get(PURPOSE_HEADER, ""), headers.get(RUN_HEADER, ""), stream, fault)
        )
        return await self._answer(writer, body, fault, stream, keep_alive)

    async def _answer(
        self, writer: asyncio.StreamWriter, body: dict[str, Any], fault: Fault, stream: bool, keep_alive: bool
    ) -> bool:
        if fault in (Fault.HTTP_500, Fault.HTTP_503, Fault.HTTP_429):
            status = int(fault.value.removeprefix("http_"))
            extra = {"Retry-After": "0"} if status != 500 else None
            await send_json(
                writer, status, error_body(f"{fault.value} (faulty instance)", "server_error"), keep_alive, extra
            )
            return keep_alive
        if fault is Fault.HANG:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.hang_s)
            return False
        messages: Messages = [m for m in body.get("messages", []) if isinstance(m, dict)]
        text = "" if fault is Fault.EMPTY else (self.reply(messages) if callable(self.reply) else self.reply)
        prompt = "".join(str(m.get("content", "")) for m in messages)
        reply = ChatReply(f"chatcmpl-{uuid.uuid4().hex[:24]}", self.model, text, estimate_tokens(prompt), "fp_faulty")
        if not stream:
            return await self._whole(writer, reply, fault, keep_alive)
        return await self._stream(writer, reply, wants_usage(body), fault, keep_alive)

    async def _whole(self, writer: asyncio.StreamWriter, reply: ChatReply, fault: Fault, keep_alive: bool) -> bool:
        payload = json.dumps(reply.completion()).encode()
        if fault is Fault.GARBAGE:
            await send_bytes(writer, 200, "application/json", b'{"choices": [ not json', keep_alive)
            return keep_alive
        if fault in (Fault.NO_DONE, Fault.CUT, Fault.DROP):
            # The head announces the whole body; half of it arrives, then the connection goes.
            head = [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))]
            writer.write(response_head(200, head) + payload[: len(payload) // 2])
            await writer.drain()
            _close(writer, reset=fault is Fault.DROP)
            return False
        await send_bytes(writer, 200, "application/json", payload, keep_alive)
        return keep_alive

    async def _stream(
        self, writer: asyncio.StreamWriter, reply: ChatReply, usage: bool, fault: Fault, keep_alive: bool
    ) -> bool:
        sse = reply.sse(usage)
        writer.write(event_stream_head(keep_alive))
        await writer.drain()
        if fault is Fault.DROP:
            _close(writer, reset=True)
            return False
        half = sse.pieces[: max(1, len(sse.pieces) // 2)]
        if fault is Fault.GARBAGE:
            parts = [sse.opening, *half, chunk(b'data: {"choices": [ {not json\n\n'), *sse.closing]
        elif fault is Fault.NO_DONE:
            parts = [sse.opening, *sse.pieces, chunk(b"")]
        elif fault is Fault.CUT:
            parts = [sse.opening, *half]
        else:
            parts = [sse.opening, *sse.pieces, *sse.closing]
        writer.write(b"".join(parts))
        await writer.drain()
        if fault is Fault.CUT:
            _close(writer, reset=False)
            return False
        return keep_alive and fault is not Fault.GARBAGE


def _close(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    """Close the connection: an orderly FIN, or a reset (RST) as a crashed peer or proxy sends."""
    if reset:
        writer.transport.abort()
    else:
        writer.close()
