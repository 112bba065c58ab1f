"""Cleaning of generated and attached tests, and the probe inputs taken from tests."""

from __future__ import annotations

from swarm_assessor import tests_from_task as extraction
from swarm_assessor.generated_tests import attached_tests, clean_generated, name_generated, runnable
from swarm_assessor.probes import collect_probes, instrument
from swarm_assessor.runner import PROBE_FUNCTION
from swarm_assessor.tests_from_task import TaskTest

FIB_TASK = '''def fib(n: int) -> int:
    """Return the n-th Fibonacci number.

    >>> fib(10)
    55
    """
'''


def _sources(tests: list[TaskTest]) -> list[str]:
    return [t.source for t in tests]


def test_placeholders_dropped_but_bound_underscore_kept() -> None:
    raw = [
        "assert _________ == fib(3)",
        "assert fib(___) == 2",
        "assert fib(3) == _",
        "assert [fib(2) for _ in range(2)] == [1, 1]",
        "assert fib(4) == 3",
    ]
    kept = clean_generated(raw, ["fib"], [], 128)
    assert _sources(kept) == ["assert [fib(2) for _ in range(2)] == [1, 1]", "assert fib(4) == 3"]
    assert all(t.generated and t.kind == "assert" for t in kept)


def test_only_asserts_calling_the_entry_point() -> None:
    raw = [
        "assert other(3) == 2",
        "assert 1 + 1 == 2",
        "x = fib(3)",
        "fib(3) == 2",
        "assert fib(3) == 2\nassert fib(4) == 3",
        "assert not fib(0)",
        "assert fib(3) is 2",
    ]
    assert _sources(clean_generated(raw, ["fib"], [], 128)) == ["assert not fib(0)", "assert fib(3) is 2"]


def test_no_entry_point_keeps_asserts_that_call_any_function() -> None:
    raw = ["assert 1 + 1 == 2", "assert greet('a') == 'hi a'", "assert len([1]) == 1"]
    assert _sources(clean_generated(raw, [], [], 128)) == ["assert greet('a') == 'hi a'", "assert len([1]) == 1"]


def test_unparseable_dropped_and_duplicates_by_canonical_form() -> None:
    raw = [
        "assert fib(3) == ",
        "assert fib(3) ==== 2",
        "assert \tfib(3)==2",
        "assert fib( 3 ) == 2, 'message differs'",
        "assert (fib(3) == 2)",
        "assert fib(5) == 5",
    ]
    kept = clean_generated(raw, ["fib"], [], 128)
    assert _sources(kept) == ["assert fib(3) == 2", "assert fib(5) == 5"]


def test_visible_duplicates_dropped() -> None:
    visible = extraction.tests_from_task(FIB_TASK)
    raw = ["assert fib(10) == 55", "assert 55 == fib(10)", "assert fib(10)==55, 'same as the doctest'"]
    assert _sources(clean_generated(raw, ["fib"], visible, 128)) == ["assert 55 == fib(10)"]


def test_cap_keeps_first_seen_order() -> None:
    raw = ["assert _ == fib(0)"] + [f"assert fib({n}) >= 0" for n in range(10)] + ["assert fib(1) >= 0"]
    kept = clean_generated(raw, ["fib"], [], 4)
    assert _sources(kept) == [f"assert fib({n}) >= 0" for n in range(4)]
    assert clean_generated(raw, ["fib"], [], 0) == []
    named = name_generated(kept)
    assert [t.name for t in named][:2] == ["generated 1: fib(0) >= 0", "generated 2: fib(1) >= 0"]


def test_attached_tests_are_visible_and_numbered_after_the_task() -> None:
    visible = extraction.tests_from_task(FIB_TASK)
    attached = attached_tests(
        ["assert fib(10)==55", "assert fib(2) == 1", "x = fib(3)\nassert x == 2", "not python (", "y = 1"], visible
    )
    assert [t.name for t in attached] == ["attached 2: fib(2) == 1", "attached 3: x = fib(3) assert x == 2"]
    assert not any(t.generated for t in attached)


def test_runnable() -> None:
    assert runnable([None])
    assert runnable(["TypeError", "AssertionError"])
    assert runnable(["timeout"])
    assert not runnable(["NameError", "TypeError"])
    assert not runnable([])


def test_probes_from_every_kind_of_test() -> None:
    sources = [
        "fib(10)",
        "assert fib(3) == 2",
        "assert 2 == fib(3)",
        "assert fib(0) is False",
        "assert not fib(1)",
        "assert fib(fib(4)) == 2",
        "assert [fib(i) for i in range(5)] == [0, 1, 1, 2, 3]",
        "assert other(7) == fib( 7 )",
    ]
    assert collect_probes(sources, ["fib"]) == [
        "fib(10)",
        "fib(3)",
        "fib(0)",
        "fib(1)",
        "fib(fib(4))",
        "fib(4)",
        "fib(7)",
    ]


def test_probes_without_entry_points_skip_builtins() -> None:
    assert collect_probes(["assert len(greet('a')) == 4"], []) == ["greet('a')"]


def test_instrument_routes_probe_calls_through_the_recorder() -> None:
    index = {"fib(3)": 0, "fib(4)": 1, "fib(fib(4))": 2}
    text = instrument("assert fib(fib(4)) == fib(3) and [fib(i) for i in range(2)]", index, ["fib"])
    assert text == (
        f"assert {PROBE_FUNCTION}(2, lambda: fib({PROBE_FUNCTION}(1, lambda: fib(4)))) == "
        f"{PROBE_FUNCTION}(0, lambda: fib(3)) and [fib(i) for i in range(2)]"
    )
    assert instrument("print('no call')", index, ["fib"]) == "print('no call')"
