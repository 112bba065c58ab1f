"""extract_code on the reply shapes small models really produce."""

from __future__ import annotations

from swarmlib import entry_points, extract_code, task_code
from tests.fakes import FIB_REPLY, HAS_CLOSE_ELEMENTS_REPLY, PROSE_ONLY_REPLY

HUMANEVAL_PROMPT = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)
    True
    """
'''

HELPER_PROMPT = '''import math


def is_prime(n: int) -> bool:
    return n > 1 and all(n % k for k in range(2, math.isqrt(n) + 1))


def count_primes(limit: int) -> int:
    """Count the primes below limit (use is_prime)."""
'''


def run(code: str) -> dict[str, object]:
    namespace: dict[str, object] = {}
    exec(compile(code, "<extracted>", "exec"), namespace)
    return namespace


def test_fenced_block_with_prose_around() -> None:
    code = extract_code(FIB_REPLY, "Write a Python function fib(n) returning the n-th Fibonacci number.")
    assert code.startswith("def fib(n: int) -> int:")
    assert "Explanation" not in code and "Here's" not in code
    fib = run(code)["fib"]
    assert callable(fib) and fib(10) == 55


def test_picks_solution_over_usage_example() -> None:
    reply = (
        "Usage first:\n```python\nprint(fib(10))\n```\n"
        "The solution:\n```python\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n```\n"
        "And a test:\n```python\nassert fib(5) == 5\n```\n"
    )
    code = extract_code(reply, "Write a function fib(n).")
    assert code.startswith("def fib(n):")
    assert "print" not in code and "assert" not in code


def test_prefers_block_defining_the_entry_point() -> None:
    reply = (
        "```python\ndef helper_that_is_long(x):\n    y = x * 2\n    z = y + 1\n    return z\n```\n"
        "```python\ndef fib(n):\n    return n\n```\n"
    )
    assert extract_code(reply, "Write a function fib(n).").startswith("def fib(n):")


def test_unfenced_code_in_prose() -> None:
    reply = (
        "Sure, here is the function you asked for.\n"
        "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
        "This iterates n times. Hope it helps!\n"
    )
    code = extract_code(reply, "Write fib(n)")
    assert code.startswith("def fib(n):") and "Hope" not in code
    fib = run(code)["fib"]
    assert callable(fib) and fib(7) == 13


def test_completion_body_continues_the_prompt_and_stops_at_test_lines() -> None:
    body = (
        "    for i, a in enumerate(numbers):\n"
        "        for b in numbers[i + 1:]:\n"
        "            if abs(a - b) < threshold:\n"
        "                return True\n"
        "    return False\n\n\n"
        "print(has_close_elements([1.0, 2.0], 0.5))\n"
        "assert has_close_elements([1.0, 1.1], 0.5)\n"
    )
    code = extract_code(body, HUMANEVAL_PROMPT)
    assert code.startswith("from typing import List")
    assert "print(" not in code and "assert " not in code
    fn = run(code)["has_close_elements"]
    assert callable(fn)
    assert fn([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3) is True
    assert fn([1.0, 2.0, 3.0], 0.5) is False


def test_missing_typing_import_is_taken_from_the_prompt() -> None:
    code = extract_code(HAS_CLOSE_ELEMENTS_REPLY, HUMANEVAL_PROMPT)
    assert code.startswith("from typing import List")
    fn = run(code)["has_close_elements"]
    assert callable(fn) and fn([1.0, 1.2], 0.3) is True


def test_helper_from_prompt_is_added_with_its_own_imports() -> None:
    reply = (
        "```python\ndef count_primes(limit: int) -> int:\n    return sum(1 for n in range(limit) if is_prime(n))\n```"
    )
    code = extract_code(reply, HELPER_PROMPT)
    assert "def is_prime" in code and "import math" in code
    count_primes = run(code)["count_primes"]
    assert callable(count_primes) and count_primes(20) == 8


def test_helper_the_reply_redefines_is_not_duplicated() -> None:
    reply = (
        "```python\ndef is_prime(n: int) -> bool:\n    return n in (2, 3, 5, 7, 11, 13, 17, 19)\n\n\n"
        "def count_primes(limit: int) -> int:\n    return sum(1 for n in range(limit) if is_prime(n))\n```"
    )
    code = extract_code(reply, HELPER_PROMPT)
    assert code.count("def is_prime") == 1
    assert "import math" not in code


def test_whole_solution_indented_is_not_taken_for_a_body() -> None:
    prompt = 'def add(a: int, b: int) -> int:\n    """Add two numbers."""\n'
    reply = "    def add(a: int, b: int) -> int:\n        return a + b\n"
    add = run(extract_code(reply, prompt))["add"]
    assert callable(add) and add(1, 2) == 3


def test_no_code_gives_empty_string() -> None:
    assert extract_code(PROSE_ONLY_REPLY, "Write fib(n)") == ""
    assert extract_code("", HUMANEVAL_PROMPT) == ""


def test_unterminated_fence_still_extracts() -> None:
    assert extract_code("```python\ndef fib(n):\n    return 1\n", "fib") == "def fib(n):\n    return 1\n"


def test_task_code_and_entry_points() -> None:
    assert task_code(HUMANEVAL_PROMPT) == HUMANEVAL_PROMPT
    assert entry_points(HUMANEVAL_PROMPT) == ["has_close_elements"]
    assert entry_points("Write a Python function fib(n) and a function `lucas(n)`.") == ["fib", "lucas"]
    fenced = "Complete:\n```python\nimport math\n\ndef area(r: float) -> float:\n    '''Circle area.'''\n```\n"
    assert entry_points(fenced) == ["area"]
    code = extract_code("```python\ndef area(r: float) -> float:\n    return math.pi * r ** 2\n```", fenced)
    assert code.startswith("import math")
