"""Code extraction on generated model replies and tasks: it never raises, and never takes long.

Replies are untrusted text: prose around fences that never close, languages no one asked for,
code that does not parse, completion bodies for a task's own code, thousands of lines that look
like the start of a definition. Whatever comes, ``extract_code`` returns a program or nothing.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import given, strategies as st

from swarmlib import entry_points, extract_code, task_code

from .budget import LONG_TIMEOUT_S, UNIT, UNIT_LONG
from .messages import texts

SNIPPETS = [
    "def fib(n):\n    return n\n",
    "def fib(n:\n",
    "class A:\n    pass\n",
    "import math\n",
    "from os import path\n",
    "@decorator\ndef f():\n    pass\n",
    "    return a + b\n",
    "\treturn x\n",
    "if __name__ == '__main__':\n    print(fib(3))\n",
    "print(fib(10))\n",
    "assert fib(1) == 1\n",
    "x = " + "(" * 200 + ")" * 200 + "\n",
    "y = " + "not " * 5000 + "x\n",
    "z = " + " + ".join(["1"] * 3000) + "\n",
    "def g():\n" + "    " * 200 + "pass\n",
    "lambda: (yield)\n",
    "return 1\n",
    "nonlocal q\n",
    "\x00\n",
]
FENCE_LANGS = ["", "python", "py", "Python3", "js", "text", "python title='x'", "```"]
TASKS = [
    "",
    "Write a Python function fib(n).\n>>> fib(10)\n55\n",
    'def add(a, b):\n    """Return a + b.\n    >>> add(1, 2)\n    3\n    """\n',
    "import math\n\ndef is_prime(n):\n    '''True when n is prime.'''\n",
    "```python\ndef f(x):\n    pass\n```\nWrite the function f.",
]


@st.composite
def replies(draw: st.DrawFn) -> str:
    """Prose, snippets and fences (some never closed), in any order and number."""
    parts = []
    for _ in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["prose", "snippet", "fence", "open fence", "text"]))
        if kind == "prose":
            parts.append(draw(st.sampled_from(["Here is the code:\n", "Changes: faster.\n", "", "\n\n"])))
        elif kind == "snippet":
            parts.append(draw(st.sampled_from(SNIPPETS)))
        elif kind == "text":
            parts.append(draw(texts(max_size=300)))
        else:
            lang = draw(st.sampled_from(FENCE_LANGS))
            body = "".join(draw(st.lists(st.sampled_from(SNIPPETS), max_size=4)))
            parts.append(f"```{lang}\n{body}" + ("```\n" if kind == "fence" else ""))
    return "".join(parts)


def check(reply: str, task: str) -> None:
    code = extract_code(reply, task)
    assert isinstance(code, str) and (code == "" or code.endswith("\n"))
    assert isinstance(task_code(task), str) and isinstance(entry_points(task), list)


@UNIT
@given(reply=st.one_of(replies(), texts()), task=st.one_of(st.sampled_from(TASKS), texts(max_size=300)))
def test_extraction_never_raises(reply: str, task: str) -> None:
    check(reply, task)


@pytest.mark.slow
@pytest.mark.timeout(LONG_TIMEOUT_S)
@UNIT_LONG
@given(reply=st.one_of(replies(), texts()), task=st.one_of(st.sampled_from(TASKS), texts(max_size=300)))
def test_extraction_never_raises_long(reply: str, task: str) -> None:
    check(reply, task)


@pytest.mark.parametrize(
    "reply",
    [
        "def f(:\n" * 2_000,  # every line could start a definition, no span of them parses
        "def f(x):\n    return (\n" * 1_000,
        "import os\n" + "def f(:\n" * 2_000 + "def g():\n    pass\n",
        "```python\n" + "def f(:\n" * 2_000,
    ],
    ids=["2000 broken defs", "1000 open brackets", "broken defs between good ones", "unclosed fence"],
)
def test_extraction_of_a_long_hostile_reply_takes_little_time(reply: str) -> None:
    started = time.perf_counter()
    check(reply, TASKS[1])
    assert time.perf_counter() - started < 5.0
