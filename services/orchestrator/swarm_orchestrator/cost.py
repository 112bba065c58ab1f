"""What a run may cost at most: the upper bound a budget reserves before the fan-out.

The bound must never be below what the run then spends, or concurrent runs could overspend a
budget between them. So every call it may make is priced at its worst: each answer slot tried
twice (the fallback), every call at ``max_tokens`` of output, prompts at one token per UTF-8 byte
plus a chat-template allowance (a byte-level BPE tokenizer never makes more tokens than bytes), and
every token at the dearest price among the instances the run may use. Refinement prompts carry the
top answers and tests, so they are allowed ``REFINE_TOP + writers`` answers' worth of tokens on top
of twice the task. docs/budgets.md ("The upper bound").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from swarmlib import InstanceSpec, entry_points, token_cost_usd

from .prompts import solve_messages
from .tests_writer import TESTS_MAX_TOKENS, writer_messages

TEMPLATE_TOKENS_PER_MESSAGE = 8
REFINE_TOP = 3
REFINE_TEMPLATE_TOKENS = 4096
ATTEMPTS_PER_SLOT = 2


def prompt_bound_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """At most this many prompt tokens: one a byte, plus the chat template's per-message tokens."""
    return sum(len(m.get("content", "").encode("utf-8")) + TEMPLATE_TOKENS_PER_MESSAGE for m in messages) + 8


@dataclass(frozen=True)
class RunShape:
    """The calls a run may make: answer slots, test writers, refinement rounds."""

    task: str
    slots: int
    writers: int
    refine_rounds: int
    max_tokens: int

    def writer_calls(self) -> int:
        return self.writers if entry_points(self.task) else 0


def dearest(specs: Sequence[InstanceSpec]) -> tuple[float, float]:
    """The highest input and output prices (USD per million tokens) among ``specs``."""
    return (
        max((s.price_input_per_mtok for s in specs), default=0.0),
        max((s.price_output_per_mtok for s in specs), default=0.0),
    )


def upper_bound_usd(shape: RunShape, specs: Sequence[InstanceSpec]) -> float:
    """The most the run can cost (module docstring); 0 when every allowed instance is free."""
    price_in, price_out = dearest(specs)
    if price_in == 0 and price_out == 0:
        return 0.0
    task_bytes = len(shape.task.encode("utf-8"))
    solve = token_cost_usd(prompt_bound_tokens(solve_messages(shape.task)), shape.max_tokens, price_in, price_out)
    total = solve * ATTEMPTS_PER_SLOT * shape.slots
    writers = shape.writer_calls()
    if writers:
        functions = entry_points(shape.task)
        prompt = prompt_bound_tokens(writer_messages(shape.task, functions))
        total += writers * token_cost_usd(prompt, min(shape.max_tokens, TESTS_MAX_TOKENS), price_in, price_out)
    if shape.refine_rounds:
        prompt = 2 * task_bytes + (REFINE_TOP + writers) * shape.max_tokens + REFINE_TEMPLATE_TOKENS
        total += shape.refine_rounds * token_cost_usd(prompt, shape.max_tokens, price_in, price_out)
    return total


def largest_fitting(shape: RunShape, specs: Sequence[InstanceSpec], room_usd: float) -> int:
    """The most answer slots (down from ``shape.slots``, at least 1) whose bound fits ``room_usd``;
    0 when even one does not."""
    for slots in range(shape.slots, 0, -1):
        if upper_bound_usd(
            RunShape(shape.task, slots, shape.writers, shape.refine_rounds, shape.max_tokens), specs
        ) <= (room_usd):
            return slots
    return 0
