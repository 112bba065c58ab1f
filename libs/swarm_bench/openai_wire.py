"""What OpenAI-compatible servers send: chat completions whole or as SSE chunks, usage, model
listings and errors, shaped like OpenAI's and llama.cpp's answers.

The replay server and the test fake both answer the swarm's LLM client with these, so the client
cannot tell either from a real API and the two cannot drift apart.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

from .http1 import chunk, event_stream_head, send_json, sse_chunk

DONE_CHUNK = chunk(b"data: [DONE]\n\n")
LAST_CHUNK = chunk(b"")


class Usage(TypedDict):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Message(TypedDict):
    role: str
    content: str


class Choice(TypedDict):
    index: int
    message: Message
    finish_reason: str


class ChatCompletion(TypedDict):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(TypedDict, total=False):
    role: str
    content: str


class ChunkChoice(TypedDict):
    index: int
    delta: Delta
    logprobs: None
    finish_reason: str | None


class ChatCompletionChunk(TypedDict):
    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    system_fingerprint: str
    choices: list[ChunkChoice]
    usage: NotRequired[Usage | None]  # present on every chunk when the request asked for usage


class ModelEntry(TypedDict):
    id: str
    object: Literal["model"]
    owned_by: str


class ModelList(TypedDict):
    object: Literal["list"]
    data: list[ModelEntry]


class ErrorDetail(TypedDict):
    message: str
    type: str
    code: None


class ErrorBody(TypedDict):
    error: ErrorDetail


def error_body(message: str, kind: str) -> ErrorBody:
    """An error body shaped like OpenAI's."""
    return {"error": {"message": message, "type": kind, "code": None}}


def model_list(model: str, owned_by: str) -> ModelList:
    """The ``GET /v1/models`` answer of a server that serves one model."""
    return {"object": "list", "data": [{"id": model, "object": "model", "owned_by": owned_by}]}


def stream_pieces(text: str) -> list[str]:
    """Split like a tokenizer would stream: words with their leading whitespace."""
    return re.findall(r"\s*\S+|\s+", text)


def estimate_tokens(text: str) -> int:
    """A prompt's token count as these servers report it: four characters a token, at least one."""
    return max(1, len(text) // 4)


def wants_usage(body: Mapping[str, Any]) -> bool:
    """Whether a streaming request asked for the final usage chunk (``stream_options.include_usage``)."""
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


@dataclass(frozen=True)
class SseStream:
    """A streamed reply as HTTP chunks, in the order they are sent after the response head."""

    opening: bytes  # the assistant role, no content yet
    pieces: list[bytes]  # one content piece each
    closing: list[bytes]  # the finish reason, the usage (when asked), [DONE], the terminating chunk


@dataclass(frozen=True)
class ChatReply:
    """One answer of ``model``: what a completion, its stream chunks and its usage say."""

    id: str
    model: str
    text: str
    prompt_tokens: int
    system_fingerprint: str
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def pieces(self) -> list[str]:
        return stream_pieces(self.text)

    def usage(self) -> Usage:
        completion_tokens = len(self.pieces)
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        }

    def completion(self) -> ChatCompletion:
        """The whole answer, for a request that did not ask for a stream."""
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": self.text}, "finish_reason": "stop"}],
            "usage": self.usage(),
        }

    def chunk(self, delta: Delta, finish: str | None, include_usage: bool) -> ChatCompletionChunk:
        """One stream chunk; with ``include_usage`` it carries ``usage: null`` as OpenAI's do."""
        message: ChatCompletionChunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            message["usage"] = None
        return message

    def usage_chunk(self) -> ChatCompletionChunk:
        """The last chunk of a stream that asked for usage: no choices, the usage."""
        message = self.chunk({}, None, True)
        message["choices"] = []
        message["usage"] = self.usage()
        return message

    def sse(self, include_usage: bool) -> SseStream:
        closing = [sse_chunk(self.chunk({}, "stop", include_usage))]
        if include_usage:
            closing.append(sse_chunk(self.usage_chunk()))
        return SseStream(
            opening=sse_chunk(self.chunk({"role": "assistant", "content": ""}, None, include_usage)),
            pieces=[sse_chunk(self.chunk({"content": piece}, None, include_usage)) for piece in self.pieces],
            closing=[*closing, DONE_CHUNK, LAST_CHUNK],
        )


async def send_reply(writer: asyncio.StreamWriter, reply: ChatReply, body: Mapping[str, Any], keep_alive: bool) -> None:
    """Answer a chat completion request with ``reply``: whole, or streamed when the request asks for it."""
    if not body.get("stream"):
        await send_json(writer, 200, reply.completion(), keep_alive)
        return
    stream = reply.sse(wants_usage(body))
    writer.write(b"".join([event_stream_head(keep_alive), stream.opening, *stream.pieces, *stream.closing]))
    await writer.drain()
