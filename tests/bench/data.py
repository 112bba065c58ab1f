"""Tiny bench data files written by the tests (HumanEval-shaped, one completion and one chat task)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

ADD_PROMPT = 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b.\n    >>> add(1, 1)\n    2\n    """\n'
EVEN_PROMPT = 'def is_even(n: int) -> bool:\n    """Return True when n is even, else False."""\n'

# The hidden tests; the marker comments make any leak unmistakable. The first defines check but
# never calls it (the bench must add ``check(add)``), the second calls it like HumanEval does.
ADD_REFERENCE = (
    "\n\ndef check(candidate):\n"
    "    assert candidate(2, 3) == 5  # REFERENCE-ONLY-7f3a\n"
    "    assert candidate(-4, 4) == 0\n"
)
EVEN_REFERENCE = (
    "\n\ndef check(candidate):\n"
    "    assert candidate(4) is True  # REFERENCE-ONLY-91c2\n"
    "    assert candidate(7) is False\n\n\ncheck(is_even)\n"
)


# A visible test (the user's, shown to the swarm), with its own marker: it must arrive.
ADD_VISIBLE = "assert add(10, 5) == 15  # VISIBLE-3e1d"


def records(with_reference: bool, with_visible: bool = False) -> list[dict[str, Any]]:
    add: dict[str, Any] = {
        "task_id": "Tiny/0",
        "prompt": ADD_PROMPT,
        "entry_point": "add",
        "style": "completion",
        "candidates": [
            {"source": "m/t0.8#0", "text": "    return a + b\n"},
            {"source": "m/t0.8#1", "text": "    return a - b\n"},
            {"source": "m/t0.8#2", "text": "    return b + a\n\n"},
        ],
        "generated_tests": ["assert add(1, 2) == 3", "assert add(0, 0) == 0"],
    }
    even: dict[str, Any] = {
        "task_id": "Tiny/1",
        "prompt": EVEN_PROMPT,
        "entry_point": "is_even",
        "style": "chat",
        "candidates": [
            {"source": "chat/t0.2#1", "text": "```python\ndef is_even(n: int) -> bool:\n    return n % 2 == 0\n```"},
            {"source": "chat/t0.2#2", "text": "Here:\n```python\ndef is_even(n):\n    return n % 2 == 1\n```"},
            {"source": "chat/t0.2#3", "text": "```python\ndef is_even(n: int) -> bool:\n    return not n % 2\n```"},
        ],
    }
    if with_visible:
        add["visible_tests"] = [ADD_VISIBLE]
    if with_reference:
        add["reference_test"] = ADD_REFERENCE
        even["reference_test"] = EVEN_REFERENCE
    return [add, even]


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path
