"""Sample responses shared by the collator tests: cosmetic variants and genuinely different approaches."""

from __future__ import annotations

FIB_RECURSIVE = "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n"

FIB_RECURSIVE_DOCUMENTED = '''def fib(n: int) -> int:
    """Return the n-th Fibonacci number."""
    # base case
    if n <= 1:
        return n
    return fib(n-1) + fib(n-2)  # recurse
'''

FIB_RECURSIVE_RENAMED = (
    "def fib(x):\n    if x < 2:\n        return x\n    else:\n        return fib(x - 1) + fib(x - 2)\n"
)

FIB_LOOP = "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"

FIB_LOOP_DOCUMENTED = '''def fib(n: int) -> int:
    """Iteratively compute fib."""
    prev, cur = 0, 1
    for i in range(n):
        prev, cur = cur, prev + cur  # advance the pair
    return prev
'''

FIB_MATRIX = """import numpy as np

def fib(n):
    m = np.array([[1, 1], [1, 0]], dtype=object)
    return np.linalg.matrix_power(m, n)[0, 1] if n else 0
"""

FIB_CLOSED_FORM = """import math

def fib(n):
    phi = (1 + math.sqrt(5)) / 2
    return round(phi ** n / math.sqrt(5))
"""

FIB_MEMO = """from functools import lru_cache

@lru_cache(maxsize=None)
def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)
"""

PROSE_SORT_A = "You can sort a list in Python with the built-in sorted() function, which returns a new sorted list."
PROSE_SORT_B = "Use Python's built-in sorted() function to sort a list; it returns a new list in sorted order."
PROSE_WEATHER = "The weather in the mountains is cold and windy tonight, so bring a warm jacket and boots."
