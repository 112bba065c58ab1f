"""Test doubles: a fake OpenAI-compatible LLM server and recorded-style replies."""

from __future__ import annotations

from .openai_server import Behaviour, FakeLLMServer, Headers, RecordedRequest, Reply
from .replies import FIB_REPLY, HAS_CLOSE_ELEMENTS_REPLY, PROSE_ONLY_REPLY, REFINED_FIB_REPLY

__all__ = [
    "FIB_REPLY",
    "HAS_CLOSE_ELEMENTS_REPLY",
    "PROSE_ONLY_REPLY",
    "REFINED_FIB_REPLY",
    "Behaviour",
    "FakeLLMServer",
    "Headers",
    "RecordedRequest",
    "Reply",
]
