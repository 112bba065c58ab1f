"""What OpenAI-compatible servers send: error bodies and replies split the way models stream them."""

from __future__ import annotations

import re
from typing import Any


def openai_error(message: str, kind: str) -> dict[str, Any]:
    """An error body shaped like OpenAI's."""
    return {"error": {"message": message, "type": kind, "code": None}}


def stream_pieces(text: str) -> list[str]:
    """Split like a tokenizer would stream: words with their leading whitespace."""
    return re.findall(r"\s*\S+|\s+", text)
