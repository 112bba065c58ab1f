"""The OpenAI chat-completions wire as the client reads it: SSE lines and whole bodies parsed into
what one attempt produced, every malformation an ``LLMMalformedError`` quoting (never more than)
the start of what was sent, with the key redacted."""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx

from ._errors import LLMMalformedError

if TYPE_CHECKING:
    from ._llm import Endpoint


@dataclass
class StreamState:
    parts: list[str] = field(default_factory=list)
    finish_reason: str = ""
    model: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    done: bool = False


def excerpt(endpoint: Endpoint, text: str, limit: int = 80) -> str:
    """The start of what an instance sent, for an error message, without the key it was sent:
    a gateway that echoes the request's headers must not put the key into runs, logs and spans."""
    if endpoint.api_key:
        text = text.replace(endpoint.api_key, "[redacted]")
    return text[:limit]


async def sse_lines(response: httpx.Response) -> AsyncIterator[str]:
    """The stream's lines, read as UTF-8 whatever charset the server names (an event stream is
    always UTF-8), bad bytes replaced; a line ends at CRLF, LF or CR."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    async for raw in response.aiter_bytes():
        *lines, pending = LINE_END.split(pending + decoder.decode(raw))
        for line in lines:
            yield line
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


LINE_END = re.compile(r"\r\n|\n|\r")


def parse_sse_line(endpoint: Endpoint, line: str, state: StreamState) -> None:
    line = line.strip()
    if not line or line.startswith(":") or line.startswith(("event:", "id:", "retry:")):
        return
    if not line.startswith("data:"):
        raise LLMMalformedError(f"{endpoint.name}: not an SSE line: {excerpt(endpoint, line)!r}")
    data = line[5:].strip()
    if data == "[DONE]":
        state.done = True
        return
    try:
        chunk = json.loads(data)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json can follow
        raise LLMMalformedError(f"{endpoint.name}: invalid JSON in stream: {excerpt(endpoint, data)!r}") from None
    if not isinstance(chunk, dict):
        raise LLMMalformedError(f"{endpoint.name}: stream chunk is not an object: {excerpt(endpoint, data)!r}")
    if "error" in chunk:
        raise LLMMalformedError(f"{endpoint.name}: error in stream: {excerpt(endpoint, str(chunk['error']), 200)}")
    model = chunk.get("model")
    if isinstance(model, str) and model and not state.model:
        state.model = model[:200]
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        state.prompt_tokens = int_or_none(usage.get("prompt_tokens"))
        state.completion_tokens = int_or_none(usage.get("completion_tokens"))
    choices = chunk.get("choices")
    if choices is None:
        if usage is None:
            raise LLMMalformedError(f"{endpoint.name}: stream chunk has no choices: {excerpt(endpoint, data)!r}")
        return
    if not isinstance(choices, list):
        raise LLMMalformedError(f"{endpoint.name}: choices is not a list")
    for choice in choices:
        if not isinstance(choice, dict):
            raise LLMMalformedError(f"{endpoint.name}: choice is not an object")
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise LLMMalformedError(f"{endpoint.name}: delta is not an object")
        content = delta.get("content")
        if content is not None and not isinstance(content, str):
            raise LLMMalformedError(f"{endpoint.name}: delta content is not text")
        if content:
            state.parts.append(content)
        if choice.get("finish_reason"):
            state.finish_reason = str(choice["finish_reason"])


def parse_whole(endpoint: Endpoint, raw: bytes) -> StreamState:
    """Servers that ignore ``stream: true`` answer with one JSON body; accept that too."""
    try:
        body = json.loads(raw)
        choice = body["choices"][0]
        content = choice["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError, RecursionError):
        raise LLMMalformedError(
            f"{endpoint.name}: not a chat completion: {excerpt(endpoint, raw.decode('utf-8', 'replace'))!r}"
        ) from None
    if not isinstance(body, dict) or not isinstance(choice, dict) or not isinstance(content, str):
        shown = excerpt(endpoint, raw.decode("utf-8", "replace"))
        raise LLMMalformedError(f"{endpoint.name}: not a chat completion (content is not text): {shown!r}")
    usage = body.get("usage")
    usage = usage if isinstance(usage, dict) else {}
    model = body.get("model")
    return StreamState(
        parts=[content],
        finish_reason=str(choice.get("finish_reason") or "stop"),
        prompt_tokens=int_or_none(usage.get("prompt_tokens")),
        completion_tokens=int_or_none(usage.get("completion_tokens")),
        done=True,
        model=model[:200] if isinstance(model, str) else "",
    )


# A token count beyond this is a server's garbage; it would not fit Usage's int64 (or a float price).
MAX_TOKENS_REPORTED = 2**53


def int_or_none(value: object) -> int | None:
    """A reported token count, or None (then it is estimated) when it is not a plausible one."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS_REPORTED:
        return value
    return None
