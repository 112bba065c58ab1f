"""ChatClient's ``on_text``: the answer's text as it is parsed, never twice, across retries.

The server is an httpx ``MockTransport`` whose body is produced chunk by chunk, so a test decides
exactly where a stream pauses or breaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest

from swarmlib import ChatClient, Endpoint, LLMConnectError, LLMHTTPError, LLMMalformedError, RetryPolicy

MESSAGES = [{"role": "user", "content": "Write fib(n)."}]
ENDPOINT = Endpoint("fake", "http://fake.test/v1", "qwen")
SSE = {"content-type": "text/event-stream"}


def sse(content: str | None = None, finish: str | None = None, role: bool = False) -> bytes:
    delta: dict[str, str] = {"role": "assistant"} if role else {}
    if content is not None:
        delta["content"] = content
    return f"data: {json.dumps({'choices': [{'delta': delta, 'finish_reason': finish}]})}\n\n".encode()


DONE = b"data: [DONE]\n\n"


class Body(httpx.AsyncByteStream):
    """A response body sent piece by piece; a callable piece is awaited (a pause) or raises (a break)."""

    def __init__(self, *pieces: bytes | Callable[[], Awaitable[None]] | BaseException) -> None:
        self._pieces = pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            if isinstance(piece, BaseException):
                raise piece
            if callable(piece):
                await piece()
                continue
            yield piece


class Heard:
    """An ``on_text`` that keeps what it was told."""

    def __init__(self) -> None:
        self.deltas: list[str] = []

    async def __call__(self, delta: str) -> None:
        self.deltas.append(delta)


@contextlib.asynccontextmanager
async def client(
    *responses: httpx.Response, attempts: int = 3
) -> AsyncIterator[tuple[ChatClient, list[httpx.Request]]]:
    """A client whose server gives ``responses`` in order; the requests it was sent."""
    sent: list[httpx.Request] = []
    queue = list(responses)

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return queue.pop(0)

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        yield ChatClient(http, RetryPolicy(attempts=attempts, base_delay=0.0, max_delay=0.0)), sent


async def test_each_content_delta_is_heard_in_order_and_they_make_the_answer() -> None:
    body = Body(sse("", role=True), sse("def fib(n):"), sse("\n    return n"), sse(finish="stop"), DONE)
    async with client(httpx.Response(200, headers=SSE, stream=body)) as (chat, _):
        heard = Heard()
        result = await chat.complete(ENDPOINT, MESSAGES, timeout=5, on_text=heard)
        assert heard.deltas == ["def fib(n):", "\n    return n"]  # the role chunk and the finish carry no text
        assert "".join(heard.deltas) == result.text


async def test_text_is_heard_while_the_stream_is_still_arriving() -> None:
    first_heard = asyncio.Event()

    async def until_heard() -> None:
        await asyncio.wait_for(first_heard.wait(), 2)  # the rest is sent only once the first piece was heard

    async def on_text(delta: str) -> None:
        first_heard.set()

    body = Body(sse("x = "), until_heard, sse("1", finish="stop"), DONE)
    async with client(httpx.Response(200, headers=SSE, stream=body)) as (chat, _):
        result = await chat.complete(ENDPOINT, MESSAGES, timeout=5, on_text=on_text)
        assert result.text == "x = 1"


async def test_a_whole_json_answer_is_heard_once() -> None:
    whole = {"choices": [{"message": {"role": "assistant", "content": "x = 1"}, "finish_reason": "stop"}]}
    async with client(httpx.Response(200, json=whole)) as (chat, _):
        heard = Heard()
        result = await chat.complete(ENDPOINT, MESSAGES, timeout=5, on_text=heard)
        assert heard.deltas == ["x = 1"] and result.text == "x = 1"


async def test_an_error_status_is_retried_and_only_the_answer_that_came_is_heard() -> None:
    async with client(
        httpx.Response(500, text="down"),
        httpx.Response(429, text="slow down"),
        httpx.Response(200, headers=SSE, stream=Body(sse("x = 1", finish="stop"), DONE)),
    ) as (chat, sent):
        heard = Heard()
        result = await chat.complete(ENDPOINT, MESSAGES, timeout=5, on_text=heard)
        assert len(sent) == 3 and result.attempts == 3
        assert heard.deltas == ["x = 1"]


async def test_a_stream_broken_after_text_fails_the_call_with_only_its_start_heard() -> None:
    body = Body(sse("def fib(n):"), httpx.ReadError("connection reset"))
    async with client(httpx.Response(200, headers=SSE, stream=body)) as (chat, sent):
        heard = Heard()
        with pytest.raises(LLMMalformedError, match="broke mid-stream"):
            await chat.complete(ENDPOINT, MESSAGES, timeout=5, on_text=heard)
        assert heard.deltas == ["def fib(n):"] and len(sent) == 1


@pytest.mark.parametrize("watched", [True, False])
async def test_a_retryable_error_after_text_is_not_retried_watched_or_not(watched: bool) -> None:
    """A connection-class error is retried when the attempt produced no text, never after: a watcher
    would hear the answer twice, and watching must not change the outcome."""
    broken = Body(sse("def fib(n):"), httpx.DecodingError("bad chunk encoding"))
    async with client(
        httpx.Response(200, headers=SSE, stream=broken),
        httpx.Response(200, headers=SSE, stream=Body(sse("x = 1", finish="stop"), DONE)),
    ) as (chat, sent):
        heard = Heard()
        with pytest.raises(LLMConnectError, match="DecodingError"):
            await chat.complete(ENDPOINT, MESSAGES, timeout=5, on_text=heard if watched else None)
        assert len(sent) == 1
        assert heard.deltas == (["def fib(n):"] if watched else [])


async def test_the_same_error_before_any_text_is_retried() -> None:
    async with client(
        httpx.Response(200, headers=SSE, stream=Body(sse("", role=True), httpx.DecodingError("bad chunk encoding"))),
        httpx.Response(200, headers=SSE, stream=Body(sse("x = 1", finish="stop"), DONE)),
    ) as (chat, sent):
        heard = Heard()
        result = await chat.complete(ENDPOINT, MESSAGES, timeout=5, on_text=heard)
        assert len(sent) == 2 and result.attempts == 2 and heard.deltas == ["x = 1"]


async def test_an_error_status_after_retries_is_raised_with_nothing_heard() -> None:
    async with client(httpx.Response(503, text="down"), attempts=1) as (chat, _):
        heard = Heard()
        with pytest.raises(LLMHTTPError):
            await chat.complete(ENDPOINT, MESSAGES, timeout=5, on_text=heard)
        assert heard.deltas == []
