"""The LLM client against generated answers: SSE streams, whole JSON bodies, HTTP errors, cut anywhere.

An instance is outside the machine and may send anything. The client either returns a result
or raises one of the documented ``LLM*Error`` domain errors; the text it returns goes through
code extraction, which never raises either. The instance is an httpx ``MockTransport`` serving
the generated body in generated pieces.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from hypothesis import event, given, strategies as st

from swarmlib import ChatClient, Endpoint, LLMError, RetryPolicy, extract_code

from .budget import LONG_TIMEOUT_S, UNIT, UNIT_LONG
from .messages import texts

ENDPOINT = Endpoint(name="fuzzed", base_url="http://instance.test/v1", model="qwen", api_key="k")
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts(max_size=10), inner, max_size=4),
    max_leaves=12,
)
REPLIES = st.one_of(
    texts(max_size=300),
    st.sampled_from(["```python\ndef fib(n):\n    return n\n```\n", "def f(:\n" * 50, "Changes: none.\n"]),
)


def content_values() -> st.SearchStrategy[Any]:
    return st.one_of(REPLIES, JSON)


@st.composite
def chunks(draw: st.DrawFn) -> dict[str, Any]:
    """One ``chat.completion.chunk``, mostly well formed, any field of it possibly of the wrong type."""
    delta = draw(st.one_of(st.fixed_dictionaries({"content": content_values()}), JSON))
    choice = draw(
        st.one_of(
            st.fixed_dictionaries(
                {"index": st.just(0), "delta": st.just(delta)},
                optional={"finish_reason": st.one_of(st.sampled_from(["stop", "length", None]), JSON)},
            ),
            JSON,
        )
    )
    chunk: dict[str, Any] = {"choices": draw(st.one_of(st.just([choice]), JSON))}
    if draw(st.booleans()):
        chunk["usage"] = draw(
            st.one_of(
                st.fixed_dictionaries({"prompt_tokens": JSON, "completion_tokens": JSON}),
                st.just({"prompt_tokens": 3, "completion_tokens": 5}),
                st.just({"prompt_tokens": 10**400, "completion_tokens": -(2**63) - 1}),
                JSON,
            )
        )
    if draw(st.booleans()):
        chunk["model"] = draw(JSON)
    if draw(st.integers(0, 20)) == 0:
        chunk["error"] = draw(JSON)
    if draw(st.integers(0, 10)) == 0:
        del chunk["choices"]
    return chunk


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def sse_lines(draw: st.DrawFn) -> bytes:
    line = draw(
        st.one_of(
            chunks().map(lambda c: "data: " + json.dumps(c)),
            st.sampled_from(
                [
                    "data: [DONE]",
                    ": keep-alive",
                    "event: message",
                    "id: 7",
                    "retry: 10",
                    "",
                    "data:",
                    "data: {not json",
                    "data: 42",
                    "data: " + nested(100_000),  # deeper than json can recurse
                    "data: " + '{"a":' * 5000 + "1" + "}" * 5000,
                    "garbage",
                ]
            ),
            texts(max_size=80),
        )
    )
    end = draw(st.sampled_from(["\n\n", "\n", "\r\n\r\n", "\r", ""]))
    raw = (line + end).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 15)) == 0:
        raw += draw(st.sampled_from([b"\xff\xfe", b"\xc3(", b"\x00", b"\xed\xa0\x80"]))
    return raw


@st.composite
def answers(draw: st.DrawFn) -> tuple[int, dict[str, str], bytes]:
    """A generated model reply as a well-formed stream (or whole body), with extras a server may add."""
    pieces = draw(st.lists(REPLIES, min_size=1, max_size=6))
    lines = [json.dumps({"choices": [{"index": 0, "delta": {"content": piece}}]}) for piece in pieces]
    lines.append(json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if draw(st.booleans()):
        usage = draw(st.sampled_from([{"prompt_tokens": 7, "completion_tokens": 9}, {"prompt_tokens": 2**64}]))
        lines.append(json.dumps({"choices": [], "usage": usage}))
    events = [f"data: {line}" for line in lines] + (["data: [DONE]"] if draw(st.booleans()) else [])
    extras = draw(st.lists(st.sampled_from([": ping", "event: message", "id: 1", "retry: 5"]), max_size=3))
    events = extras + events
    end = draw(st.sampled_from(["\n\n", "\r\n\r\n", "\n"]))
    if draw(st.integers(0, 4)) == 0:
        whole = {"choices": [{"message": {"content": "".join(pieces)}, "finish_reason": "stop"}], "model": "qwen"}
        return 200, {"content-type": "application/json"}, json.dumps(whole).encode()
    charset = draw(st.sampled_from(["", "; charset=utf-8", "; charset=latin-1", "; charset=utf-16"]))
    return 200, {"content-type": f"text/event-stream{charset}"}, "".join(e + end for e in events).encode()


@st.composite
def bodies(draw: st.DrawFn) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of one HTTP answer: a plausible one, or anything."""
    if draw(st.booleans()):
        return draw(answers())
    status = draw(
        st.one_of(st.just(200), st.sampled_from([200, 400, 401, 404, 429, 500, 502, 503]), st.integers(100, 599))
    )
    content_type = draw(
        st.sampled_from(
            [
                "text/event-stream",
                "text/event-stream; charset=utf-8",
                "text/event-stream; charset=utf-16",
                "text/event-stream; charset=bogus",
                "application/json",
                "application/json; charset=latin-1",
                "",
                "text/html",
            ]
        )
    )
    headers = {"content-type": content_type} if content_type else {}
    if draw(st.booleans()):
        headers["retry-after"] = draw(st.sampled_from(["0", "-1", "nan", "inf", "1e400", "soon", "0.01"]))
    if content_type.startswith("application/json"):
        whole = draw(
            st.one_of(
                st.fixed_dictionaries(
                    {"choices": st.just([{"message": {"content": draw(content_values())}, "finish_reason": "stop"}])},
                    optional={"usage": JSON, "model": JSON},
                ),
                JSON,
            )
        )
        body = json.dumps(whole).encode()
        if draw(st.integers(0, 10)) == 0:
            body = nested(100_000).encode()
    else:
        body = b"".join(draw(st.lists(sse_lines(), max_size=12)))
    return status, headers, body


def transport(answers: list[tuple[int, dict[str, str], bytes]], cuts: list[int]) -> httpx.MockTransport:
    """Serves the answers in turn (the last one again once they run out), each in pieces cut at ``cuts``."""
    served = 0

    async def pieces(body: bytes) -> AsyncIterator[bytes]:
        start = 0
        for cut in sorted(c % (len(body) + 1) for c in cuts):
            if cut > start:
                yield body[start:cut]
                start = cut
        yield body[start:]

    async def handle(request: httpx.Request) -> httpx.Response:
        nonlocal served
        status, headers, body = answers[min(served, len(answers) - 1)]
        served += 1
        return httpx.Response(status, headers=headers, content=pieces(body))

    return httpx.MockTransport(handle)


async def call_once(answers: list[tuple[int, dict[str, str], bytes]], cuts: list[int], watch: bool) -> None:
    heard: list[str] = []

    async def on_text(text: str) -> None:
        assert isinstance(text, str) and text
        heard.append(text)

    async with httpx.AsyncClient(transport=transport(answers, cuts)) as http:
        client = ChatClient(http, RetryPolicy(attempts=2, base_delay=0.0, max_delay=0.0))
        try:
            result = await client.complete(
                ENDPOINT,
                [{"role": "user", "content": "Write fib(n)."}],
                timeout=5.0,
                run_id="run-\u202e\n1",
                on_text=on_text if watch else None,
            )
        except LLMError as exc:
            event(type(exc).__name__)
            assert str(exc).startswith(f"{ENDPOINT.name}:"), str(exc)
            return
    event("answered")
    assert isinstance(result.text, str) and result.text.strip()
    for tokens in (result.prompt_tokens, result.completion_tokens):
        assert isinstance(tokens, int) and 0 <= tokens < 2**63, "Usage holds token counts as int64"
    if watch:
        assert "".join(heard) == result.text
    code = extract_code(result.text, "Write a Python function fib(n).")
    assert isinstance(code, str)


ANSWERS = st.lists(bodies(), min_size=1, max_size=3)
CUTS = st.lists(st.integers(0, 10_000), max_size=6)


@UNIT
@given(answers=ANSWERS, cuts=CUTS, watch=st.booleans())
async def test_the_llm_client_raises_only_its_domain_errors(
    answers: list[tuple[int, dict[str, str], bytes]], cuts: list[int], watch: bool
) -> None:
    await call_once(answers, cuts, watch)


@pytest.mark.slow
@pytest.mark.timeout(LONG_TIMEOUT_S)
@UNIT_LONG
@given(answers=ANSWERS, cuts=CUTS, watch=st.booleans())
async def test_the_llm_client_raises_only_its_domain_errors_long(
    answers: list[tuple[int, dict[str, str], bytes]], cuts: list[int], watch: bool
) -> None:
    await call_once(answers, cuts, watch)
