"""Parsing what an instance writes when asked for tests."""

from __future__ import annotations

from swarm_orchestrator.tests_writer import assert_lines, writer_messages

REPLY = """Here are some tests:

```python
assert fib(0) == 0
assert fib(10) == 55
    assert fib(1) == 1  # indented inside a block
print(fib(3))
```
"""


def test_assert_lines_are_taken_from_fenced_or_plain_text() -> None:
    assert assert_lines(REPLY) == [
        "assert fib(0) == 0",
        "assert fib(10) == 55",
        "assert fib(1) == 1  # indented inside a block",
    ]


def test_the_request_names_the_functions_under_test() -> None:
    messages = writer_messages("def fib(n):\n    ...", ["fib"])
    assert messages[0]["role"] == "system" and "assert" in messages[0]["content"]
    assert messages[1]["content"].endswith("Write 10 assert statements that test fib.")
