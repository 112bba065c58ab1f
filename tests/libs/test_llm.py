"""ChatClient and list_models against the fake server: every failure becomes the right domain error."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from swarmlib import (
    PURPOSE_HEADER,
    RUN_HEADER,
    ChatClient,
    Endpoint,
    LLMConnectError,
    LLMEmptyError,
    LLMHTTPError,
    LLMMalformedError,
    LLMTimeoutError,
    RetryPolicy,
    list_models,
)
from tests.fakes import FIB_REPLY, Behaviour, FakeLLMServer

MESSAGES = [{"role": "user", "content": "Write fib(n)."}]


@pytest.fixture
async def server() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(model="qwen") as srv:
        yield srv


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


@pytest.fixture
def client(http: httpx.AsyncClient) -> ChatClient:
    return ChatClient(http, RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05))


def endpoint(srv: FakeLLMServer, api_key: str = "") -> Endpoint:
    return Endpoint(name="fake", base_url=srv.base_url, model=srv.model, api_key=api_key)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_answer_returns_text_and_reported_usage(server: FakeLLMServer, client: ChatClient) -> None:
    result = await client.complete(endpoint(server), MESSAGES, timeout=5)
    assert result.text == FIB_REPLY
    assert result.usage_reported
    assert result.completion_tokens > 0 and result.prompt_tokens > 0
    assert result.finish_reason == "stop"
    assert result.attempts == 1
    body = server.chat_requests[0].body
    assert body["stream"] is True and body["model"] == "qwen" and body["messages"] == MESSAGES


async def test_reply_callable_sees_messages(client: ChatClient) -> None:
    async with FakeLLMServer(reply=lambda msgs: "echo: " + msgs[-1]["content"]) as srv:
        result = await client.complete(endpoint(srv), MESSAGES, timeout=5)
    assert result.text == "echo: Write fib(n)."


@pytest.mark.parametrize("first", [Behaviour.HTTP_500, Behaviour.HTTP_429])
async def test_retries_then_succeeds(server: FakeLLMServer, client: ChatClient, first: Behaviour) -> None:
    server.enqueue(first, first)
    result = await client.complete(endpoint(server), MESSAGES, timeout=5)
    assert result.attempts == 3
    assert len(server.chat_requests) == 3
    assert result.text == FIB_REPLY


async def test_persistent_500_raises_http_error(server: FakeLLMServer, client: ChatClient) -> None:
    server.behaviour = Behaviour.HTTP_500
    with pytest.raises(LLMHTTPError) as info:
        await client.complete(endpoint(server), MESSAGES, timeout=5)
    assert info.value.status_code == 500
    assert len(server.chat_requests) == 3


async def test_429_carries_retry_after(server: FakeLLMServer, http: httpx.AsyncClient) -> None:
    server.behaviour = Behaviour.HTTP_429
    with pytest.raises(LLMHTTPError) as info:
        await ChatClient(http, RetryPolicy(attempts=1)).complete(endpoint(server), MESSAGES, timeout=5)
    assert info.value.status_code == 429
    assert info.value.retry_after == 0.0


async def test_hang_times_out_within_deadline(server: FakeLLMServer, client: ChatClient) -> None:
    server.behaviour = Behaviour.HANG
    started = time.perf_counter()
    with pytest.raises(LLMTimeoutError):
        await client.complete(endpoint(server), MESSAGES, timeout=0.3)
    assert time.perf_counter() - started < 1.5


async def test_slow_stream_times_out(client: ChatClient) -> None:
    async with FakeLLMServer(behaviour=Behaviour.SLOW, chunk_delay=0.05) as srv:
        with pytest.raises(LLMTimeoutError):
            await client.complete(endpoint(srv), MESSAGES, timeout=0.3)


async def test_slow_stream_within_deadline_answers(client: ChatClient) -> None:
    async with FakeLLMServer(reply="```python\nx = 1\n```", behaviour=Behaviour.SLOW, chunk_delay=0.01) as srv:
        result = await client.complete(endpoint(srv), MESSAGES, timeout=5)
    assert result.text == "```python\nx = 1\n```"


@pytest.mark.parametrize("behaviour", [Behaviour.TRUNCATED, Behaviour.MALFORMED])
async def test_broken_stream_is_malformed(server: FakeLLMServer, client: ChatClient, behaviour: Behaviour) -> None:
    server.behaviour = behaviour
    with pytest.raises(LLMMalformedError):
        await client.complete(endpoint(server), MESSAGES, timeout=5)
    assert len(server.chat_requests) == 1, "a broken stream is not retried"


async def test_empty_answer(server: FakeLLMServer, client: ChatClient) -> None:
    server.behaviour = Behaviour.EMPTY
    with pytest.raises(LLMEmptyError):
        await client.complete(endpoint(server), MESSAGES, timeout=5)


async def test_connect_refused(client: ChatClient) -> None:
    dead = Endpoint(name="dead", base_url=f"http://127.0.0.1:{free_port()}/v1", model="qwen")
    with pytest.raises(LLMConnectError, match="dead"):
        await client.complete(dead, MESSAGES, timeout=5)


async def test_headers_and_bearer_token(server: FakeLLMServer, client: ChatClient) -> None:
    await client.complete(
        endpoint(server, api_key="sk-test"), MESSAGES, timeout=5, purpose="refine", run_id="run-42", seed=7
    )
    request = server.chat_requests[0]
    assert request.headers[PURPOSE_HEADER] == "refine"
    assert request.headers[RUN_HEADER] == "run-42"
    assert request.headers["authorization"] == "Bearer sk-test"
    assert request.body["seed"] == 7


async def test_no_auth_or_run_header_when_unset(server: FakeLLMServer, client: ChatClient) -> None:
    await client.complete(endpoint(server), MESSAGES, timeout=5)
    request = server.chat_requests[0]
    assert "authorization" not in request.headers
    assert RUN_HEADER not in request.headers
    assert request.headers[PURPOSE_HEADER] == "solve"


async def test_list_models(server: FakeLLMServer, http: httpx.AsyncClient) -> None:
    assert await list_models(http, endpoint(server, api_key="k")) == ["qwen"]
    assert server.requests[0].method == "GET"
    assert server.requests[0].headers["Authorization"] == "Bearer k"


async def test_list_models_failing(server: FakeLLMServer, http: httpx.AsyncClient) -> None:
    server.behaviour = Behaviour.HTTP_500
    with pytest.raises(LLMHTTPError):
        await list_models(http, endpoint(server))
    server.behaviour = Behaviour.HANG
    with pytest.raises(LLMTimeoutError):
        await list_models(http, endpoint(server), timeout=0.2)
    dead = Endpoint(name="dead", base_url=f"http://127.0.0.1:{free_port()}/v1", model="qwen")
    with pytest.raises(LLMConnectError):
        await list_models(http, dead)


async def test_stop_releases_hanging_connection(client: ChatClient) -> None:
    srv = FakeLLMServer(behaviour=Behaviour.HANG)
    await srv.start()
    started = time.perf_counter()
    call = asyncio.create_task(client.complete(endpoint(srv), MESSAGES, timeout=10))
    await asyncio.sleep(0.1)
    await srv.stop()
    with pytest.raises((LLMMalformedError, LLMConnectError)):
        await call
    assert time.perf_counter() - started < 2.0


async def test_call_deadline_overrides_http_client_default() -> None:
    """A first token later than the shared client's own timeout must not fail a longer call."""
    async with (
        FakeLLMServer(reply="```python\nx = 1\n```", behaviour=Behaviour.SLOW, chunk_delay=0.15) as srv,
        httpx.AsyncClient(timeout=0.05) as impatient,
    ):
        result = await ChatClient(impatient, RetryPolicy(attempts=1)).complete(endpoint(srv), MESSAGES, timeout=5)
    assert result.text == "```python\nx = 1\n```"


async def test_fake_answers_non_streaming_requests(server: FakeLLMServer, http: httpx.AsyncClient) -> None:
    response = await http.post(server.base_url + "/chat/completions", json={"model": "qwen", "messages": MESSAGES})
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == FIB_REPLY
    assert body["usage"]["completion_tokens"] > 0


def _answer(text: str) -> bytes:
    chunk = json.dumps({"choices": [{"delta": {"content": text}, "finish_reason": "stop"}]})
    return f"data: {chunk}\n\ndata: [DONE]\n\n".encode()


async def test_resolve_hook_gives_the_address_for_the_whole_call_outside_its_deadline() -> None:
    """The hook is entered before the deadline starts and left after the answer, whatever it took."""
    events: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        events.append(f"POST {request.url}")
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=_answer("ok"))

    @contextlib.asynccontextmanager
    async def resolve(named: Endpoint) -> AsyncIterator[Endpoint]:
        events.append(f"resolve {named.name}")
        await asyncio.sleep(0.6)  # longer than the call's deadline: like a devbox being provisioned
        yield dataclasses.replace(named, base_url="http://resolved.test/v1")
        events.append("released")

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        client = ChatClient(http, RetryPolicy(attempts=1), resolve=resolve)
        result = await client.complete(Endpoint("box-1", "http://named.invalid/v1", "m"), MESSAGES, timeout=0.5)
    assert result.text == "ok"
    assert events == ["resolve box-1", "POST http://resolved.test/v1/chat/completions", "released"]


async def test_resolve_hook_is_left_when_the_call_fails_and_its_error_reaches_the_caller() -> None:
    events: list[str] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        events.append("POST")
        return httpx.Response(500, text="down")

    @contextlib.asynccontextmanager
    async def resolve(named: Endpoint) -> AsyncIterator[Endpoint]:
        if named.name == "unreachable":
            raise LLMConnectError("unreachable: no devbox to serve it")
        try:
            yield named
        finally:
            events.append("released")

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
        client = ChatClient(http, RetryPolicy(attempts=1), resolve=resolve)
        with pytest.raises(LLMHTTPError):
            await client.complete(Endpoint("a", "http://a.test/v1", "m"), MESSAGES, timeout=5)
        assert events == ["POST", "released"]
        with pytest.raises(LLMConnectError, match="no devbox"):
            await client.complete(Endpoint("unreachable", "http://b.test/v1", "m"), MESSAGES, timeout=5)
    assert events == ["POST", "released"]  # nothing was sent for the endpoint that did not resolve


async def test_without_a_resolve_hook_the_endpoint_is_called_as_given() -> None:
    urls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        urls.append(str(request.url))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=_answer("ok"))

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        await ChatClient(http).complete(Endpoint("a", "http://as-given.test/v1", "m"), MESSAGES, timeout=5)
    assert urls == ["http://as-given.test/v1/chat/completions"]
