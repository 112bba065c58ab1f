"""Untrusted Python that is too deep to parse reads as "does not parse", never as a crash."""

from __future__ import annotations

import ast

import pytest

from swarmlib import (
    InvalidArgumentError,
    check_candidate_ids,
    compile_error,
    entry_points,
    extract_code,
    parse_python,
    task_code,
    unparse_python,
)

DEEP_SUM = "x = " + "+".join(["1"] * 3000)  # RecursionError in the parser
DEEP_NOT = "not " * 10000  # MemoryError in the parser
# Parses, but too deep for ast.unparse and recursive NodeTransformers.
PARSES_BUT_DEEP = "x = " + "+".join(["1"] * 600)
DEEP_INPUTS = [DEEP_SUM, DEEP_NOT, PARSES_BUT_DEEP]


@pytest.mark.parametrize("code", [DEEP_SUM, DEEP_NOT, "def f(:\n", "x = '\0'"])
def test_parse_python_returns_none_for_unparsable_code(code: str) -> None:
    assert parse_python(code) is None


def test_parse_python_returns_the_module() -> None:
    tree = parse_python("def f():\n    return 1\n")
    assert isinstance(tree, ast.Module)
    assert isinstance(tree.body[0], ast.FunctionDef)


def test_unparse_python_gives_up_on_too_deep_trees() -> None:
    tree = parse_python(PARSES_BUT_DEEP)
    assert tree is not None
    assert unparse_python(tree) is None
    assert unparse_python(ast.parse("x  =  1")) == "x = 1"


def test_compile_error_says_why() -> None:
    assert compile_error("def f():\n    return 1\n") is None
    assert compile_error("def f(:\n") == "invalid syntax (line 1)"
    assert compile_error("return 1\n") == "'return' outside function (line 1)"
    assert compile_error(DEEP_SUM) == "code is nested too deeply to parse"
    assert compile_error(DEEP_NOT) == "code is nested too deeply to parse"


@pytest.mark.parametrize("deep", DEEP_INPUTS)
def test_extract_code_survives_deep_replies_and_tasks(deep: str) -> None:
    reply = f"Here:\n```python\n{deep}\n```\n"
    # The only block is taken as is (a reply's code may still fail later, in the assessor).
    assert extract_code(reply, "Write f(n).") == deep.strip() + "\n"
    assert extract_code(deep, "Write f(n).") in {"", deep.strip() + "\n"}
    good = "```python\ndef f(n):\n    return n\n```"
    assert extract_code(good, deep).startswith("def f(n):")
    assert entry_points(deep) == []
    task_code(deep)


def test_check_candidate_ids() -> None:
    check_candidate_ids(["a", "b"])
    with pytest.raises(InvalidArgumentError, match=r"candidates\[1\]\.id is empty"):
        check_candidate_ids(["a", " "])
    with pytest.raises(InvalidArgumentError, match=r"candidates\[2\]\.id='a' is a duplicate"):
        check_candidate_ids(["a", "b", "a"])
