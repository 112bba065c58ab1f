"""The OpenAI wire payloads: a whole completion and its stream say the same thing, usage as OpenAI
reports it (``usage: null`` on every chunk, then a last chunk without choices)."""

from __future__ import annotations

import json
from typing import Any

from swarm_bench.openai_wire import (
    DONE_CHUNK,
    LAST_CHUNK,
    ChatReply,
    error_body,
    estimate_tokens,
    model_list,
    stream_pieces,
    wants_usage,
)

REPLY = ChatReply("chatcmpl-1", "m", "def f():\n    return 1\n", prompt_tokens=7, system_fingerprint="fp", created=5)


def events(chunks: list[bytes]) -> list[dict[str, Any]]:
    """The JSON payload of each ``data:`` chunk (HTTP chunk framing removed)."""
    out = []
    for raw in chunks:
        size, _, rest = raw.partition(b"\r\n")
        data = rest[: int(size, 16)]
        assert data.startswith(b"data: ") and data.endswith(b"\n\n")
        out.append(json.loads(data[len(b"data: ") : -2]))
    return out


def test_whole_completion_and_usage() -> None:
    pieces = stream_pieces(REPLY.text)
    assert pieces == ["def", " f():", "\n    return", " 1", "\n"]
    assert REPLY.completion() == {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 5,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": REPLY.text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12},
    }


def test_stream_with_usage() -> None:
    stream = REPLY.sse(include_usage=True)
    assert stream.closing[-2:] == [DONE_CHUNK, LAST_CHUNK] and LAST_CHUNK == b"0\r\n\r\n"
    opening, *pieces, finish, usage = events([stream.opening, *stream.pieces, *stream.closing[:-2]])
    assert opening["choices"] == [
        {"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}
    ]
    assert "".join(p["choices"][0]["delta"]["content"] for p in pieces) == REPLY.text
    assert finish["choices"] == [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]
    assert all(e["usage"] is None for e in (opening, *pieces, finish))
    assert usage["choices"] == [] and usage["usage"] == REPLY.usage()
    assert {e["id"] for e in (opening, *pieces, finish, usage)} == {"chatcmpl-1"}
    assert {e["system_fingerprint"] for e in (opening, finish, usage)} == {"fp"}


def test_stream_without_usage() -> None:
    stream = REPLY.sse(include_usage=False)
    assert len(stream.closing) == 3
    assert all("usage" not in e for e in events([stream.opening, *stream.pieces, stream.closing[0]]))


def test_request_reading_and_small_payloads() -> None:
    assert wants_usage({"stream": True, "stream_options": {"include_usage": True}})
    assert not wants_usage({"stream": True}) and not wants_usage({"stream_options": ["include_usage"]})
    assert estimate_tokens("") == 1 and estimate_tokens("x" * 41) == 10
    assert model_list("m", "me") == {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "me"}]}
    assert error_body("no", "not_found") == {"error": {"message": "no", "type": "not_found", "code": None}}
