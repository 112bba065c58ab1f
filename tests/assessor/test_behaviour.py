"""Generated tests, attached tests and behaviour signatures over the real server and channel."""

from __future__ import annotations

import re
import textwrap

from swarm.v1 import assessor_pb2, assessor_pb2_grpc, common_pb2

FIB_TASK = '''def fib(n: int) -> int:
    """Return the n-th Fibonacci number.

    >>> fib(0)
    0
    >>> fib(1)
    1
    >>> fib(10)
    55
    >>> [fib(i) for i in range(5)]
    [0, 1, 1, 2, 3]
    """
'''

ITERATIVE = textwrap.dedent(
    '''
    def fib(n: int) -> int:
        """Iterative."""
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return a
    '''
)

RECURSIVE = textwrap.dedent(
    '''
    from functools import lru_cache


    @lru_cache(maxsize=None)
    def fib(k):
        """Recursive, written differently."""
        if k < 2:
            return k
        return fib(k - 1) + fib(k - 2)
    '''
)

WRONG = "def fib(n):\n    return n + 1 if n > 1 else n\n"

GENERATED = [
    "assert fib(5) == 5",  # right
    "assert fib(6) == 9",  # wrong for every correct candidate
    "assert ______ == fib(7)",  # placeholder: cleaned away
    "assert fib(10) == 55",  # the doctest again: cleaned away
    "assert fib(2, 3) == 1",  # TypeError for everyone: dropped after running
    "assert fib(3) == not_defined",  # NameError for everyone: dropped after running
    "assert 1 + 1 == 2",  # no entry point: cleaned away
    "assert fib(8) == 21",  # right
]

VISIBLE = common_pb2.TEST_ORIGIN_VISIBLE
GENERATED_ORIGIN = common_pb2.TEST_ORIGIN_GENERATED


async def _assess(
    stub: assessor_pb2_grpc.AssessorServiceStub,
    task: str,
    *codes: str,
    generated: list[str] | None = None,
    attached: list[str] | None = None,
    timeout: float = 0.0,
) -> assessor_pb2.AssessResponse:
    request = assessor_pb2.AssessRequest(
        run_id="r-behaviour",
        task=task,
        candidates=[common_pb2.CandidateCode(id=f"c{i + 1}", text=code, code=code) for i, code in enumerate(codes)],
        generated_tests=generated or [],
        attached_tests=attached or [],
        timeout_seconds=timeout,
    )
    response: assessor_pb2.AssessResponse = await stub.Assess(request)
    return response


async def test_generated_tests_counted_apart_from_correctness(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    response = await _assess(stub, FIB_TASK, ITERATIVE, WRONG, generated=GENERATED)
    assert response.tests_found == 4
    assert response.generated_tests_kept == 3
    good, wrong = response.assessments
    assert good.scores.tests_passed == good.scores.tests_total == 4
    assert good.scores.correctness == 1.0
    assert (good.scores.generated_passed, good.scores.generated_total) == (2, 3)
    assert [t.origin for t in good.tests] == [VISIBLE] * 4 + [GENERATED_ORIGIN] * 3
    generated = [t for t in good.tests if t.origin == GENERATED_ORIGIN]
    assert [t.name for t in generated] == [
        "generated 1: fib(5) == 5",
        "generated 2: fib(6) == 9",
        "generated 3: fib(8) == 21",
    ]
    assert [t.passed for t in generated] == [True, False, True]
    assert "left side was 8" in generated[1].output
    assert wrong.scores.tests_total == 4
    assert wrong.scores.correctness < 1.0
    assert wrong.scores.generated_total == 3
    assert wrong.scores.generated_passed == 0


async def test_generated_failures_do_not_lower_correctness(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    plain = await _assess(stub, FIB_TASK, ITERATIVE)
    noisy = await _assess(stub, FIB_TASK, ITERATIVE, generated=["assert fib(6) == 9", "assert fib(7) == 0"])
    assert noisy.generated_tests_kept == 2
    assert noisy.assessments[0].scores.generated_passed == 0
    assert noisy.assessments[0].scores.correctness == plain.assessments[0].scores.correctness == 1.0
    assert noisy.assessments[0].scores.overall == plain.assessments[0].scores.overall


async def test_tests_nobody_can_run_are_dropped(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    takes_two = "def fib(n, m=0):\n    return n\n"
    generated = ["assert fib(2, 3) == 2", "assert fib(3) == not_defined", "assert fib(3, 4, 5) == 1"]
    both = await _assess(stub, FIB_TASK, ITERATIVE, takes_two, generated=generated)
    # fib(2, 3) runs on the second candidate (it fails there with an AssertionError), so it stays.
    assert both.generated_tests_kept == 1
    for assessment in both.assessments:
        names = [t.name for t in assessment.tests if t.origin == GENERATED_ORIGIN]
        assert names == ["generated 1: fib(2, 3) == 2"]
        assert assessment.scores.generated_total == 1
    assert both.assessments[0].tests[-1].output.startswith("TypeError")
    assert both.assessments[1].scores.generated_passed == 1
    alone = await _assess(stub, FIB_TASK, ITERATIVE, generated=generated)
    assert alone.generated_tests_kept == 0
    assert all(t.origin == VISIBLE for t in alone.assessments[0].tests)
    assert alone.assessments[0].scores.generated_total == 0


async def test_tests_of_candidates_that_cannot_load_are_dropped(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    response = await _assess(stub, FIB_TASK, "raise RuntimeError('no')\n", "def fib(:\n", generated=GENERATED)
    assert response.generated_tests_kept == 0
    for assessment in response.assessments:
        assert assessment.behaviour == ""
        assert assessment.scores.generated_total == 0
        assert len(assessment.tests) == 4


async def test_behaviour_equal_for_equivalent_candidates_different_for_wrong(
    stub: assessor_pb2_grpc.AssessorServiceStub,
) -> None:
    response = await _assess(stub, FIB_TASK, ITERATIVE, RECURSIVE, WRONG, "", generated=GENERATED)
    iterative, recursive, wrong, empty = response.assessments
    assert re.fullmatch(r"[0-9a-f]{16}", iterative.behaviour)
    assert iterative.behaviour == recursive.behaviour
    assert wrong.behaviour and wrong.behaviour != iterative.behaviour
    assert empty.behaviour == ""
    # fib(0), fib(1), fib(10) from the doctests ([fib(i) ...] binds i), then fib(5), fib(6), fib(8),
    # fib(2, 3), fib(3) from the generated tests that were run.
    assert response.probes == 8
    again = await _assess(stub, FIB_TASK, RECURSIVE, generated=GENERATED)
    assert again.assessments[0].behaviour == iterative.behaviour


async def test_observations_are_canonical(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    task = "Write a function `f(x)`.\n\n```python\nassert f(1) == 0.3\nassert f(2) is not None\nassert f(3)\n```\n"
    first = textwrap.dedent(
        """
        class Box:
            def __repr__(self):
                return "<Box object at 0x%x>" % id(self)

        def f(x):
            if x == 1:
                return 0.1 + 0.2
            if x == 2:
                return {"b": {3, 1, 2}, "a": Box()}
            raise ValueError(x)
        """
    )
    second = textwrap.dedent(
        """
        class Box:
            def __repr__(self):
                return "<Box object at 0x%x>" % (id(self) + 4096)

        def f(x):
            if x == 1:
                return 0.3
            if x == 2:
                return {"a": Box(), "b": {2, 3, 1}}
            raise ValueError("other message")
        """
    )
    third = second.replace("raise ValueError", "raise KeyError")
    response = await _assess(stub, task, first, second, third)
    assert response.probes == 3
    a, b, c = response.assessments
    assert a.behaviour == b.behaviour != c.behaviour
    # 0.1 + 0.2 != 0.3 for the test itself, but the observations round floats to 6 digits.
    assert (a.scores.tests_passed, b.scores.tests_passed) == (1, 2)


async def test_attached_tests_count_as_visible(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    attached = ["assert fib(12) == 144", "assert fib(10) == 55", "assert fib(6) == 9"]
    response = await _assess(stub, FIB_TASK, ITERATIVE, attached=attached, generated=["assert fib(12) == 144"])
    assert response.tests_found == 6
    assert response.generated_tests_kept == 0
    (good,) = response.assessments
    assert good.scores.tests_total == 6
    assert good.scores.tests_passed == 5
    assert good.scores.correctness == 5 / 6
    assert all(t.origin == VISIBLE for t in good.tests)
    assert [t.name for t in good.tests[4:]] == ["attached 5: fib(12) == 144", "attached 6: fib(6) == 9"]
    assert response.probes == 5


async def test_chatty_candidate_does_not_fill_the_output_cap(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    chatty = ITERATIVE.replace('"""Iterative."""', '"""Iterative."""\n    print("x" * 5000)')
    generated = [f"assert fib({n}) >= 0" for n in range(40)]
    task = "Write a function `fib(n)` returning the n-th Fibonacci number.\n\nassert fib(10) == 55\n"
    response = await _assess(stub, task, chatty, generated=generated)
    (only,) = response.assessments
    assert only.error == ""
    assert only.limit == common_pb2.SANDBOX_LIMIT_UNSPECIFIED
    assert only.scores.tests_passed == 1
    assert only.scores.generated_passed == only.scores.generated_total == 40
    assert only.behaviour


async def test_slow_candidate_still_reports_within_its_time(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    slow = "import time\n\ndef fib(n):\n    time.sleep(0.3)\n    return [0, 1, 1, 2, 3, 5, 8][n] if n < 7 else 55\n"
    generated = [f"assert fib({n}) >= 0" for n in range(20)]
    response = await _assess(stub, FIB_TASK, slow, ITERATIVE, generated=generated, timeout=2.0)
    slow_one, fast = response.assessments
    assert response.generated_tests_kept == 20
    assert slow_one.behaviour and slow_one.behaviour != fast.behaviour
    assert "time budget of 2s ran out" in slow_one.error
    assert any(t.output == "not run: the candidate's time budget ran out" for t in slow_one.tests)
    assert slow_one.limit == common_pb2.SANDBOX_LIMIT_WALL_TIME
    assert all(
        t.limit == common_pb2.SANDBOX_LIMIT_WALL_TIME
        for t in slow_one.tests
        if t.output == "not run: the candidate's time budget ran out"
    )
    assert fast.limit == common_pb2.SANDBOX_LIMIT_UNSPECIFIED
    assert slow_one.duration_ms < 2000
    assert fast.scores.generated_passed == 20
