"""Inputs without expected outputs (typed_inputs): from the signature, the docstring, the programs' own calls."""

from __future__ import annotations

import ast

import pytest

from swarm_assessor.typed_inputs import (
    code_blocks,
    informative,
    own_calls,
    samples,
    signature_calls,
    untested_inputs,
)


def _hint(text: str) -> ast.expr:
    node = ast.parse(text, mode="eval").body
    return node


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        ("int", [1, 5, 0, 3, -3]),
        ("str", ["abc", "Hello World", ""]),
        ("bool", [True, False]),
        ("float", [1.5, 2.0, 0.0]),
    ],
)
def test_scalars_start_with_typical_values(hint: str, expected: list[object]) -> None:
    assert samples(_hint(hint))[: len(expected)] == expected


def test_generics_nest() -> None:
    lists = samples(_hint("List[int]"))
    assert [1, 5, 0] in lists and [] in lists and all(isinstance(v, list) for v in lists)
    nested = samples(_hint("list[list[str]]"))
    assert nested and all(isinstance(v, list) and all(isinstance(i, list) for i in v) for v in nested)
    pairs = samples(_hint("Tuple[int, str]"))
    assert pairs and all(isinstance(p, tuple) and isinstance(p[0], int) and isinstance(p[1], str) for p in pairs)
    varied = samples(_hint("tuple[int, ...]"))
    assert () in varied and (1, 5, 0) in varied
    mapping = samples(_hint("Dict[str, int]"))
    assert {} in mapping and any(isinstance(m, dict) and m and all(isinstance(k, str) for k in m) for m in mapping)
    assert None in samples(_hint("Optional[int]")) and 1 in samples(_hint("Optional[int]"))
    assert None in samples(_hint("int | None"))
    assert "abc" in samples(_hint("Union[int, str]"))
    assert samples(_hint("typing.List[int]")) == lists
    assert samples(_hint("'List[int]'")) == lists  # a hint written as a string
    assert samples(_hint("MyClass")) == []


def test_signature_calls_vary_every_parameter() -> None:
    task = 'def f(n: int, s: str) -> str:\n    """Repeat s n times."""\n'
    calls = signature_calls(task, "f", 6)
    assert calls[:3] == ["f(1, 'abc')", "f(5, '')", "f(0, 'aAbB12')"]
    assert len(calls) == 6 and len(set(calls)) == 6
    assert all(ast.parse(c) for c in calls)


def test_signature_calls_use_docstring_literals_and_defaults() -> None:
    task = 'def g(word: str, k: int = 2) -> int:\n    """Count \'ab\' in word, e.g. for 7 letters."""\n'
    calls = signature_calls(task, "g", 4)
    assert calls[0] == "g('ab', 7)"  # the docstring's literals come first among their type's samples
    untyped = 'def h(x, k=3):\n    """No hints."""\n'
    assert signature_calls(untyped, "h", 4) == []  # a guessed value would mostly be invalid
    defaults_only = "def h(k=3):\n    pass\n"
    assert signature_calls(defaults_only, "h", 4) == ["h(3)"]
    assert signature_calls("def z() -> int:\n    pass\n", "z", 4) == ["z()"]
    assert signature_calls("no code here", "z", 4) == []


def test_own_calls_are_module_level_literal_calls() -> None:
    code = (
        "def f(xs):\n    return f(xs[1:]) if xs else 0\n\n"
        "print(f([1, 2, 3]))\nassert f([]) == 0\nresult = f([4])\nprint(f(data))\n"
    )
    assert own_calls([code], ["f"], 10) == ["f([1, 2, 3])", "f([])", "f([4])"]
    assert own_calls([code], ["f"], 2) == ["f([1, 2, 3])", "f([])"]
    assert own_calls(["def (", code], ["g"], 10) == []


def test_code_blocks_of_a_reply() -> None:
    reply = "Here:\n```python\ndef f(x):\n    return x\n```\nUse it:\n```\nprint(f(2))\n```\n"
    assert code_blocks(reply) == ["def f(x):\n    return x\n", "print(f(2))\n"]


def test_untested_inputs_own_calls_first_then_signature_then_neighbours() -> None:
    task = 'def f(xs: list[int]) -> int:\n    """Sum."""\n'
    program = "def f(xs):\n    return sum(xs)\nprint(f([7, 8]))\n"
    inputs = untested_inputs(task, [program], ["f"], 12)
    assert inputs[0] == "f([7, 8])"
    assert "f([1, 5, 0])" in inputs and "f([])" in inputs
    assert len(inputs) == len(set(inputs)) <= 12
    assert "f([8, 7])" in inputs  # a neighbour of the program's own call
    assert untested_inputs(task, [program], ["f"], 0) == []


def test_untested_inputs_target_the_function_to_write() -> None:
    task = 'def helper(x: int) -> int:\n    return x + 1\n\n\ndef main(s: str) -> str:\n    """Do it."""\n'
    assert all(c.startswith("main(") for c in untested_inputs(task, [], ["helper", "main"], 5))


def test_informative_drops_inputs_most_programs_reject() -> None:
    rows = [
        ["1", "!TypeError", "!ValueError", "4", "5"],
        ["1", "!TypeError", "3", "4", "!IndexError"],
        ["2", "!TypeError", "!ValueError", "!timeout", "5"],
    ]
    # probe 0 comes from a test: it always counts; 1 all raise, 2 most raise, 3 and 4 most return
    assert informative(rows, 1) == [True, False, False, True, True]
    assert informative(rows, 5) == [True] * 5
    assert informative([], 0) == []
    assert informative([["1", None], [None, None]], 0) == [True, False]
