"""Replies shaped like what small chat models actually send: prose, a fenced block, an example.

Extraction and assessment are only tested honestly against the clutter real answers carry, so
these keep it: an intro sentence, a usage example after the solution, a closing explanation.
"""

from __future__ import annotations

FIB_REPLY = """Here's a simple and efficient way to compute the n-th Fibonacci number iteratively:

```python
def fib(n: int) -> int:
    \"\"\"Return the n-th Fibonacci number (fib(0) == 0, fib(1) == 1).\"\"\"
    if n < 0:
        raise ValueError("n must be non-negative")
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
```

You can use it like this:

```python
print(fib(10))  # 55
```

### Explanation
- We keep the last two numbers in `a` and `b` and advance them `n` times.
- This runs in O(n) time and O(1) memory, avoiding the exponential cost of naive recursion.
"""

REFINED_FIB_REPLY = """Combining the strengths of the candidates, this version validates its input and \
runs in linear time:

```python
def fib(n: int) -> int:
    \"\"\"Return the n-th Fibonacci number; rejects negative input instead of looping forever.\"\"\"
    if not isinstance(n, int) or n < 0:
        raise ValueError("n must be a non-negative integer")
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
```

The failing candidate returned `fib(1) == 0` because it iterated one step too few; this loop runs \
exactly `n` times.
"""

HAS_CLOSE_ELEMENTS_REPLY = """Sure! Here is the completed function:

```python
def has_close_elements(numbers: List[float], threshold: float) -> bool:
    for i, a in enumerate(numbers):
        for j, b in enumerate(numbers):
            if i != j and abs(a - b) < threshold:
                return True
    return False
```

This compares every pair of distinct elements and returns `True` as soon as two of them are \
closer than `threshold`.
"""

PROSE_ONLY_REPLY = """I'm sorry, but I can't determine what the function should return from the \
description alone. Could you give an example of the expected input and output?
"""
