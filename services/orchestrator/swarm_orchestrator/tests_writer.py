"""Ask instances to write tests for the task (CodeT): the assessor cleans and runs them.

Tests written by the same models are noisy, but a program that agrees with many of them *and*
with many other programs is rarely wrong; that dual agreement is what the ranking uses.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable

from swarm.v1 import common_pb2
from swarmlib import ChatClient, ConfigError, LLMError, entry_points

from .pool import InstancePool

log = logging.getLogger(__name__)

TESTS_SYSTEM = (
    "You are an expert Python tester. Write unit tests as plain `assert` statements, one per line, "
    "each calling the function under test with concrete arguments and comparing with the exact "
    "expected result. Cover normal cases and edge cases. Output only the assert lines."
)
_ASSERT_LINE = re.compile(r"^\s*(assert\b.*)$")
# Ten one-line asserts fit in about 250 tokens; a cap keeps a rambling writer from holding up the
# run, since assessment waits for the tests.
TESTS_MAX_TOKENS = 320


def writer_messages(task: str, functions: list[str]) -> list[dict[str, str]]:
    names = ", ".join(functions)
    user = f"{task.rstrip()}\n\nWrite 10 assert statements that test {names}."
    return [{"role": "system", "content": TESTS_SYSTEM}, {"role": "user", "content": user}]


def assert_lines(reply: str) -> list[str]:
    """The ``assert`` lines of a reply (fenced or not); the assessor parses and cleans them."""
    return [m.group(1).rstrip() for line in reply.splitlines() if (m := _ASSERT_LINE.match(line))]


async def write_tests(
    pool: InstancePool,
    client: ChatClient,
    *,
    run_id: str,
    task: str,
    allowed: list[str],
    writers: int,
    timeout_s: float,
    max_tokens: int,
    spent: Callable[[common_pb2.Usage], None] | None = None,
) -> list[str]:
    """Raw assert lines from up to ``writers`` healthy instances; failures only cost the tests.
    ``spent`` hears each answered call's tokens and cost (the run's usage counts test writing)."""
    functions = entry_points(task)
    if writers <= 0 or not functions:
        return []
    chosen = pool.writers_for(allowed, writers)

    async def ask(name: str) -> list[str]:
        spec = pool.spec(name)
        try:
            answer = await client.complete(
                pool.endpoint(name),
                writer_messages(task, functions),
                timeout=timeout_s,
                temperature=spec.temperature,
                seed=spec.seed or None,
                max_tokens=min(max_tokens, TESTS_MAX_TOKENS),
                purpose="tests",
                run_id=run_id,
            )
        except (LLMError, ConfigError) as exc:
            log.info("run %s: %s wrote no tests: %s", run_id, name, exc)
            return []
        if spent is not None:
            prompt, completion = answer.prompt_tokens, answer.completion_tokens
            spent(
                common_pb2.Usage(
                    prompt_tokens=prompt, completion_tokens=completion, cost_usd=spec.cost_usd(prompt, completion)
                )
            )
        return assert_lines(answer.text)

    batches = await asyncio.gather(*(ask(name) for name in chosen))
    return [line for batch in batches for line in batch]
