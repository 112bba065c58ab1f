"""What the refiner says a refinement changed: the reply's "Changes:" section, else a summary."""

from __future__ import annotations

import pytest

from swarm_refiner.explanation import change_size, explain, parse_changes
from tests.fakes import REFINED_FIB_REPLY

CODE = "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
BEST = "def fib(n):\n    a, b = 0, 1\n    for _ in range(n - 1):\n        a, b = b, a + b\n    return a\n"


@pytest.mark.parametrize(
    "header",
    [
        "Changes:",
        "**Changes:**",
        "**Changes**:",
        "### Changes",
        "## Changes:",
        "Changes made:",
        "- Changes:",
        "CHANGES:",
    ],
)
def test_the_changes_section_is_found_in_the_shapes_models_write(header: str) -> None:
    reply = f"Here it is:\n\n```python\n{CODE}```\n\n{header}\n- Loop n times instead of n - 1: fib(1) was 0.\n"
    assert parse_changes(reply) == "- Loop n times instead of n - 1: fib(1) was 0."


def test_text_on_the_header_line_is_kept_and_the_section_ends_at_the_next_code_block() -> None:
    example = "```python\nprint(fib(3))\n```\nBye"
    reply = f"```python\n{CODE}```\nChanges: loop n times, not n - 1.\nIt fixes fib(1).\n{example}"
    assert parse_changes(reply) == "loop n times, not n - 1.\nIt fixes fib(1)."


def test_a_changes_comment_inside_the_code_is_not_an_explanation() -> None:
    reply = "```python\n# Changes: none\ndef fib(n):\n    return n\n```\nThis is the answer."
    assert parse_changes(reply) == ""


def test_prose_that_merely_mentions_changes_is_not_a_section() -> None:
    assert parse_changes("Changes to the loop were needed.\n```python\nx = 1\n```") == ""


def test_a_long_section_is_capped() -> None:
    reply = "```python\nx = 1\n```\nChanges:\n" + "- more\n" * 1_000
    assert 0 < len(parse_changes(reply)) <= 1_000


def test_explain_prefers_the_section() -> None:
    reply = f"```python\n{CODE}```\nChanges:\n- Loop n times."
    assert explain(reply, CODE, BEST, "c1") == "- Loop n times."


def test_without_a_section_the_summary_says_so_and_measures_the_change() -> None:
    explanation = explain(REFINED_FIB_REPLY, CODE, BEST, "c1")
    assert explanation.startswith(
        'No "Changes:" section in the reply; against the best answer (c1): 1 line added, 1 removed.'
    )
    assert "The reply said: Combining the strengths of the candidates" in explanation
    assert "def fib" not in explanation, "the code itself is not repeated as the explanation"


def test_summary_for_an_unchanged_a_new_and_a_missing_program() -> None:
    assert "the program is the same as the best answer (c1)" in explain(f"```python\n{BEST}```", BEST, BEST, "c1")
    assert "had no code, so the program is new" in explain(CODE, CODE, "", "c1")
    assert explain("I cannot help.", "", BEST, "c1") == "The reply held no program."


def test_change_size_ignores_trailing_spaces() -> None:
    assert change_size("a  \nb\n", "a\nb\n") == (0, 0)
    assert change_size("a\nb\n", "a\nc\nd\n") == (2, 1)
