"""The message a swarm instance receives for a task."""

from __future__ import annotations

from swarmlib import task_code

SOLVE_SYSTEM = (
    "You are an expert Python programmer. Reply with one complete, self-contained Python solution "
    "in a single ```python code block. Keep the function names and signatures the task uses and "
    "include the imports you need. Do not add tests or example usage. At most one short sentence "
    "of explanation."
)


def solve_messages(task: str) -> list[dict[str, str]]:
    """Chat messages for a task; a task that is itself code is framed as code to complete."""
    code = task_code(task)
    if code and code.strip() == task.strip():
        user = f"Complete the following Python code. Return the whole program.\n```python\n{task.rstrip()}\n```"
    else:
        user = task
    return [{"role": "system", "content": SOLVE_SYSTEM}, {"role": "user", "content": user}]
