"""OpenAI-compatible chat client on httpx: streamed SSE, deadlines, retries, token usage.

Every failure becomes one of the ``LLM*Error`` domain errors so callers (the orchestrator's
fallback logic, the refiner) decide on a category, never on an httpx or JSON exception.
A caller may watch the text arrive (``on_text``); what it sees across retries is in
docs/live-output.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import httpx
from opentelemetry import propagate, trace

from ._errors import (
    LLMConnectError,
    LLMEmptyError,
    LLMError,
    LLMHTTPError,
    LLMMalformedError,
    LLMTimeoutError,
)
from ._llm_wire import StreamState, excerpt, parse_sse_line, parse_whole, sse_lines

PURPOSE_HEADER = "X-Swarm-Purpose"
RUN_HEADER = "X-Swarm-Run-Id"

_tracer = trace.get_tracer(__name__)


@dataclass(frozen=True)
class Endpoint:
    """Where and how to reach one instance; ``api_key`` is resolved by the caller from env."""

    name: str
    base_url: str
    model: str
    api_key: str = ""


# Turns the endpoint a caller names into the one to call, for the duration of one call (an
# instance whose address follows a devbox: provisioned first, and counted in use meanwhile).
ResolveEndpoint = Callable[[Endpoint], contextlib.AbstractAsyncContextManager[Endpoint]]

# Hears each piece of an answer's text as it is parsed, in order; awaited before parsing goes on.
OnText = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class RetryPolicy:
    """Retry on 429, 5xx and connection errors with capped exponential backoff and jitter."""

    attempts: int = 3
    base_delay: float = 0.25
    max_delay: float = 4.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        backoff = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        return float(backoff * (0.5 + random.random() / 2))


@dataclass(frozen=True)
class ChatResult:
    """A finished completion with its accounting."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    finish_reason: str
    usage_reported: bool
    attempts: int = 1
    # The model the server says answered (OpenAI's ``model`` field); empty when it did not say.
    served_model: str = ""


class _Heard:
    """The text one HTTP attempt produced, passed on to the caller's ``on_text``.

    An attempt that produced text is not retried, watched or not, so watching a call never
    changes its outcome and a watcher never hears an answer twice.
    """

    def __init__(self, on_text: OnText | None) -> None:
        self._on_text = on_text
        self.chars = 0

    async def text(self, parts: Sequence[str]) -> None:
        for part in parts:
            if part:
                self.chars += len(part)
                if self._on_text is not None:
                    await self._on_text(part)


def _retryable_status(code: int) -> bool:
    return code == 429 or 500 <= code < 600


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        return None


def estimate_tokens(text: str) -> int:
    """Rough token count (4 characters a token) for servers that report no usage."""
    return max(1, len(text) // 4) if text else 0


class ChatClient:
    """Calls ``POST {base_url}/chat/completions`` with ``stream: true`` and parses the SSE.

    ``resolve`` (by default, the endpoint as given) is entered before each call's deadline and
    span start, so waiting for an endpoint to exist does not count against the answer's time.
    """

    def __init__(
        self, http: httpx.AsyncClient, retry: RetryPolicy | None = None, *, resolve: ResolveEndpoint | None = None
    ) -> None:
        self._http = http
        self._retry = retry or RetryPolicy()
        self._resolve: ResolveEndpoint = resolve or contextlib.nullcontext

    async def complete(
        self,
        endpoint: Endpoint,
        messages: Sequence[Mapping[str, str]],
        *,
        timeout: float,
        temperature: float = 0.7,
        seed: int | None = None,
        max_tokens: int = 1024,
        purpose: str = "solve",
        run_id: str = "",
        on_text: OnText | None = None,
    ) -> ChatResult:
        """One completion within ``timeout`` seconds in total, retries included.

        The call is one ``llm.chat`` span (child of the caller's current span, e.g. the gRPC
        handler's) and every HTTP attempt carries its W3C ``traceparent``, so a tracing-aware
        model server joins the same trace.

        ``on_text`` gets the content of a 200 answer as it is parsed (a JSON body: once, whole).
        An HTTP attempt that produced text is never retried, so what ``on_text`` heard is always
        the start of one answer: all of ``ChatResult.text`` when the call returns.
        """
        async with self._resolve(endpoint) as target:
            started = time.perf_counter()
            attributes = {"swarm.purpose": purpose, "swarm.instance": target.name, "gen_ai.request.model": target.model}
            with _tracer.start_as_current_span("llm.chat", kind=trace.SpanKind.CLIENT, attributes=attributes) as span:
                try:
                    async with asyncio.timeout(timeout):
                        result = await self._with_retries(
                            target, messages, temperature, seed, max_tokens, purpose, run_id, started, timeout, on_text
                        )
                except TimeoutError:
                    raise LLMTimeoutError(f"{target.name}: no complete answer within {timeout:.1f}s") from None
                span.set_attribute("gen_ai.usage.input_tokens", result.prompt_tokens)
                span.set_attribute("gen_ai.usage.output_tokens", result.completion_tokens)
                return result

    async def _with_retries(
        self,
        endpoint: Endpoint,
        messages: Sequence[Mapping[str, str]],
        temperature: float,
        seed: int | None,
        max_tokens: int,
        purpose: str,
        run_id: str,
        started: float,
        timeout: float,
        on_text: OnText | None,
    ) -> ChatResult:
        body: dict[str, object] = {
            "model": endpoint.model,
            "messages": list(messages),
            "temperature": temperature,
            "max_tokens": max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if seed is not None:
            body["seed"] = seed
        headers = {PURPOSE_HEADER: purpose, "Accept": "text/event-stream"}
        if run_id:
            # A header carries visible ASCII only; anything else would fail the request, not the call.
            headers[RUN_HEADER] = (
                urllib.parse.quote(run_id, safe="") if not run_id.isprintable() or not run_id.isascii() else run_id
            )
        if endpoint.api_key:
            headers["Authorization"] = f"Bearer {endpoint.api_key}"
        propagate.inject(headers)
        url = endpoint.base_url.rstrip("/") + "/chat/completions"
        attempt = 0
        while True:
            attempt += 1
            heard = _Heard(on_text)
            try:
                state = await self._stream_once(endpoint, url, body, headers, timeout, heard)
            except LLMHTTPError as exc:
                if attempt >= self._retry.attempts or not _retryable_status(exc.status_code) or heard.chars:
                    raise
                await asyncio.sleep(self._retry.delay(attempt, exc.retry_after))
                continue
            except LLMConnectError:
                if attempt >= self._retry.attempts or heard.chars:
                    raise
                await asyncio.sleep(self._retry.delay(attempt, None))
                continue
            text = "".join(state.parts)
            if not text.strip():
                raise LLMEmptyError(f"{endpoint.name}: answered with no content")
            reported = state.prompt_tokens is not None and state.completion_tokens is not None
            prompt_chars = sum(len(m.get("content", "")) for m in messages)
            return ChatResult(
                text=text,
                prompt_tokens=state.prompt_tokens if state.prompt_tokens is not None else prompt_chars // 4,
                completion_tokens=(
                    state.completion_tokens if state.completion_tokens is not None else estimate_tokens(text)
                ),
                latency_ms=(time.perf_counter() - started) * 1000.0,
                finish_reason=state.finish_reason,
                usage_reported=reported,
                attempts=attempt,
                served_model=state.model,
            )

    async def _stream_once(
        self,
        endpoint: Endpoint,
        url: str,
        body: Mapping[str, object],
        headers: Mapping[str, str],
        timeout: float,
        heard: _Heard,
    ) -> StreamState:
        # The caller's deadline is the limit, not the shared client's default (httpx: 5 s), which
        # would cut a CPU model that needs longer than that to read a long prompt.
        try:
            async with self._http.stream(
                "POST", url, json=body, headers=headers, timeout=httpx.Timeout(timeout)
            ) as response:
                if response.status_code != 200:
                    detail = excerpt(endpoint, (await response.aread()).decode("utf-8", "replace"), 300)
                    raise LLMHTTPError(
                        f"{endpoint.name}: HTTP {response.status_code}: {detail.strip() or response.reason_phrase}",
                        response.status_code,
                        _retry_after(response),
                    )
                content_type = response.headers.get("content-type", "")
                if "application/json" in content_type:
                    whole = parse_whole(endpoint, await response.aread())
                    await heard.text(whole.parts)
                    return whole
                state = StreamState()
                async for line in sse_lines(response):
                    parsed = len(state.parts)
                    parse_sse_line(endpoint, line, state)
                    await heard.text(state.parts[parsed:])
                    if state.done:
                        break
        except LLMError:
            raise
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise LLMConnectError(f"{endpoint.name}: cannot connect to {url}: {exc}") from exc
        except httpx.TimeoutException as exc:
            raise LLMTimeoutError(f"{endpoint.name}: read timed out: {exc}") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise LLMMalformedError(f"{endpoint.name}: connection broke mid-stream: {exc}") from exc
        except httpx.HTTPError as exc:
            raise LLMConnectError(f"{endpoint.name}: {type(exc).__name__}: {exc}") from exc
        if not state.done and not state.finish_reason:
            raise LLMMalformedError(f"{endpoint.name}: stream ended before [DONE] (truncated answer)")
        return state


async def list_models(http: httpx.AsyncClient, endpoint: Endpoint, timeout: float = 3.0) -> list[str]:
    """Health check: ``GET {base_url}/models``; returns the model ids or raises an ``LLMError``."""
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    try:
        response = await http.get(endpoint.base_url.rstrip("/") + "/models", headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise LLMTimeoutError(f"{endpoint.name}: /models timed out") from exc
    except httpx.HTTPError as exc:
        raise LLMConnectError(f"{endpoint.name}: /models unreachable: {exc}") from exc
    if response.status_code != 200:
        raise LLMHTTPError(f"{endpoint.name}: /models answered HTTP {response.status_code}", response.status_code)
    try:
        return [str(m["id"]) for m in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise LLMMalformedError(f"{endpoint.name}: /models answer is not a model list") from None
