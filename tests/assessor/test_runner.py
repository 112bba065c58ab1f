"""The sandbox runner's functions, imported directly, and the whole module run as a program.

The canonical observations are pinned to what the harness's original in-string runner produced
for the same values (computed with it before it became ``runner.py``): the behaviour digest of
a program must not change with the refactoring, or with any later one.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from swarm_assessor import runner
from swarm_assessor.harness import Plan, build_execution, build_spec, parse_report
from swarm_assessor.tests_from_task import TaskTest
from swarm_bench.fake_runloop import FakeRunloopAPI, sandbox_config
from swarmlib import SandboxConfig, SandboxLimit, open_sandbox

if TYPE_CHECKING:
    from swarm_assessor.runner import TestSpec

CAP = 500


class _Box:
    def __repr__(self) -> str:
        return "<Box object at 0x7f00deadbeef>"


class _Unrepresentable:
    def __repr__(self) -> str:
        raise RuntimeError("no")


def _nested(depth: int) -> list[object]:
    value: list[object] = []
    for _ in range(depth):
        value = [value]
    return value


# (value, what the original runner observed)
GOLDEN: list[tuple[object, str]] = [
    (0.1 + 0.2, "0.3"),
    (-0.0, "0.0"),
    (1e-300, "1e-300"),
    (2.5e20, "2.5e+20"),
    (float("nan"), "nan"),
    (float("inf"), "inf"),
    (complex(0.1 + 0.2, -1 / 3), "(0.3-0.333333j)"),
    ("x" * 300, "'" + "x" * 199),
    (b"ab", "b'ab'"),
    (True, "True"),
    (None, "None"),
    ([1, [2, [3]]], "[1, [2, [3]]]"),
    (list(range(100)), ("[" + ", ".join(str(i) for i in range(100)))[:200]),
    ((1,), "(1,)"),
    ((), "()"),
    ({3, 1, 2}, "{1, 2, 3}"),
    (frozenset(), "frozenset()"),
    (set(), "set()"),
    (frozenset({"b", "a"}), "frozenset({'a', 'b'})"),
    ({"b": 1, "a": [_Box()]}, "{'a': [<Box object>], 'b': 1}"),
    (set(range(1001)), ("{" + ", ".join(str(i) for i in range(1001)))[:200]),
    ({i: i for i in range(1001)}, ("{" + ", ".join(f"{i}: {i}" for i in range(1001)))[:200]),
    (_Box(), "<Box object>"),
    (_Unrepresentable(), "!unrepresentable"),
    ([_Unrepresentable()], "!unrepresentable"),
    ({1: 2.0, "1": 3}, "{'1': 3, 1: 2.0}"),
    (_nested(30), "[" * 21 + "..." + "]" * 21),
]
# The digest of the golden observations followed by [None, "!timeout", "!ValueError"], as the
# original runner computed it.
GOLDEN_DIGEST = "9ee1e1871cc09ea4"


@pytest.mark.parametrize(("value", "seen"), GOLDEN)
def test_observations_are_canonical_as_they_always_were(value: object, seen: str) -> None:
    assert runner.observe(value) == seen


def test_a_huge_int_is_observed_in_hex_and_the_digest_is_unchanged() -> None:
    huge = 10**5000  # past the int-to-str digit limit, so repr raises
    assert runner.observe(huge) == hex(huge)[:200]
    observations = runner.Observations(0)
    observations.values = [seen for _, seen in GOLDEN]
    observations.values.insert(9, hex(huge)[:200])  # where the original list had it
    observations.values += [None, runner.TIMEOUT_OBSERVATION, "!ValueError"]
    assert observations.digest() == GOLDEN_DIGEST
    text = json.dumps(observations.values, ensure_ascii=False)
    assert hashlib.sha256(text.encode()).hexdigest()[:16] == GOLDEN_DIGEST


@pytest.fixture
def alarm() -> Iterator[None]:
    """The runner's SIGALRM handler for one test; pytest-timeout's alarm is put back after."""
    handler = signal.getsignal(signal.SIGALRM)
    remaining, _ = signal.getitimer(signal.ITIMER_REAL)
    signal.signal(signal.SIGALRM, runner._on_alarm)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, handler)
    if remaining:
        signal.setitimer(signal.ITIMER_REAL, remaining)


def test_a_probe_keeps_its_first_observation_and_passes_the_call_through() -> None:
    observations = runner.Observations(3)
    assert observations.probe(0, lambda: [2, 1]) == [2, 1]
    assert observations.probe(0, lambda: "later") == "later"
    with pytest.raises(ZeroDivisionError):
        observations.probe(1, lambda: 1 // 0)
    assert observations.values == ["[2, 1]", "!ZeroDivisionError", None]


def test_a_probe_that_runs_out_of_time_is_observed_as_a_timeout(alarm: None) -> None:
    observations = runner.Observations(1)
    ns: dict[str, object] = {runner.PROBE_FUNCTION: observations.probe}
    spec = _assert_spec(f"{runner.PROBE_FUNCTION}(0, lambda: spin())")
    ns["spin"] = _spin
    assert runner.run_test(spec, ns, 0.05, CAP) == ("timed out after 0.05s", runner.TIMEOUT, runner.WALL_TIME)
    assert observations.values == [runner.TIMEOUT_OBSERVATION]


def _spin() -> None:
    while True:
        pass


def _doctest_spec(source: str, want: str = "", exc_msg: str | None = None) -> TestSpec:
    return {
        "kind": "doctest",
        "source": source,
        "want": want,
        "exc_msg": exc_msg,
        "left": "",
        "budget": 1.0,
        "cap": 500,
    }


def _assert_spec(source: str, left: str = "") -> TestSpec:
    return {"kind": "assert", "source": source, "want": "", "exc_msg": None, "left": left, "budget": 1.0, "cap": CAP}


def _double(n: int) -> int:
    if n < 0:
        raise ValueError("negative")
    return 2 * n


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        (_doctest_spec("double(2)", "4"), None),
        (_doctest_spec("double(2)", "  4\n"), None),  # whitespace does not matter
        (_doctest_spec("double(2)", "5"), "expected 5, got 4"),
        (_doctest_spec("[double(1), double(2)]", "[2,\n 4]"), None),
        (_doctest_spec("double(2)", "2 + 2"), None),  # the wanted text evaluates to the same value
        (_doctest_spec("print(double(2))", "4"), None),
        (_doctest_spec("x = double(2)"), None),  # a statement: exec'd, shows nothing
        (_doctest_spec("double(2)"), "expected no output, got 4"),
        (_doctest_spec("None", "1"), "expected 1, got nothing"),
        (_doctest_spec("double(-1)", exc_msg="ValueError: negative\n"), None),
        (_doctest_spec("double(-1)", exc_msg="ValueError: other words\n"), None),  # the type is enough
        (_doctest_spec("double(-1)", exc_msg="KeyError: 'x'\n"), "expected KeyError: 'x', got ValueError: negative"),
        (_doctest_spec("double(1)", exc_msg="ValueError\n"), "expected ValueError, nothing was raised"),
        (_doctest_spec("double(2)", "x" * 600), ("expected " + "x" * 600)[:CAP]),
    ],
)
def test_doctest_checking(spec: TestSpec, problem: str | None) -> None:
    assert runner.check_doctest(spec, {"double": _double}, CAP) == (problem, runner.NO_LIMIT)


def test_a_doctest_that_raises_unexpectedly_fails_with_the_exception() -> None:
    with pytest.raises(ValueError, match="negative"):
        runner.check_doctest(_doctest_spec("double(-1)", "0"), {"double": _double}, CAP)
    assert runner.run_test(_doctest_spec("double(-1)", "0"), {"double": _double}, 1.0, CAP) == (
        "ValueError: negative",
        "ValueError",
        runner.NO_LIMIT,
    )


N = runner.NO_LIMIT


def test_assert_checking_shows_the_left_side_of_a_bare_failing_comparison() -> None:
    ns = {"double": _double}
    assert runner.check_assert(_assert_spec("assert double(2) == 4"), ns, CAP) is None
    failing = _assert_spec("assert double(2) == 5", left="double(2)")
    assert runner.check_assert(failing, ns, CAP) == "AssertionError: left side was 4"
    assert runner.run_test(failing, ns, 1.0, CAP) == ("AssertionError: left side was 4", "AssertionError", N)
    worded = _assert_spec("assert double(2) == 5, 'twice two'", left="double(2)")
    assert runner.run_test(worded, ns, 1.0, CAP) == ("AssertionError: twice two", "AssertionError", N)
    assert runner.run_test(_assert_spec("assert double(-1)"), ns, 1.0, CAP) == ("ValueError: negative", "ValueError", N)


def test_each_test_has_its_own_time_budget(alarm: None) -> None:
    ns = {"spin": _spin, "double": _double}
    timed_out = ("timed out after 0.05s", runner.TIMEOUT, runner.WALL_TIME)
    assert runner.run_test(_assert_spec("spin()"), ns, 0.05, CAP) == timed_out
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)  # the budget does not outlive its test
    assert runner.run_test(_assert_spec("assert double(1) == 2"), ns, 0.05, CAP) == (None, None, runner.NO_LIMIT)
    assert runner.run_probe("spin()", ns, 0.05) == runner.TIMEOUT_OBSERVATION
    assert runner.run_probe("double(-1)", ns, 0.05) == "!ValueError"
    assert runner.run_probe("double(3)", ns, 0.05) == "6"


def test_describe_cuts_long_messages() -> None:
    assert runner.describe(KeyError("k"), CAP) == "KeyError: 'k'"
    assert runner.describe(MemoryError(), CAP) == "MemoryError"
    assert runner.describe(ValueError("x" * 100), 20) == "ValueError: xxxxxxx…"


def _raise(exc: BaseException) -> None:
    raise exc


@pytest.mark.parametrize(
    ("exc", "limit"),
    [
        (MemoryError(), SandboxLimit.MEMORY),
        (OSError(27, "File too large"), SandboxLimit.FILE_SIZE),
        (OSError(28, "No space left on device"), SandboxLimit.TMP_SPACE),
        (BlockingIOError(11, "Resource temporarily unavailable"), SandboxLimit.PROCESSES),
        (RuntimeError("can't start new thread"), SandboxLimit.PROCESSES),
        (OSError(2, "No such file or directory"), SandboxLimit.NONE),
        (ValueError("MemoryError, [Errno 27], timed out after 1s"), SandboxLimit.NONE),  # words decide nothing
        (RuntimeError("something else"), SandboxLimit.NONE),
    ],
)
def test_the_runner_names_the_limit_an_exception_says_was_hit(exc: BaseException, limit: SandboxLimit) -> None:
    assert SandboxLimit(runner.limit_of(exc)) is limit
    ns: dict[str, object] = {"fail": lambda: _raise(exc)}
    assert runner.run_test(_assert_spec("fail()"), ns, 1.0, CAP)[2] == limit.value
    # A doctest expecting another exception fails, and still says which limit stopped it.
    expecting = _doctest_spec("fail()", exc_msg="KeyError: 'x'\n")
    problem, found = runner.check_doctest(expecting, ns, CAP)
    assert problem is not None and problem.startswith("expected KeyError: 'x', got ") and found == limit.value
    # One expecting exactly that exception passes: nothing stopped it.
    assert runner.check_doctest(_doctest_spec("fail()", exc_msg=type(exc).__name__), ns, CAP) == (None, N)


def test_every_limit_word_of_the_runner_is_a_sandbox_limit() -> None:
    words = [runner.NO_LIMIT, runner.WALL_TIME, runner.MEMORY, runner.FILE_SIZE, runner.TMP_SPACE, runner.PROCESSES]
    assert [SandboxLimit(word).value for word in words] == words
    assert SandboxLimit(runner.NO_LIMIT) is SandboxLimit.NONE
    assert set(runner._ERRNO_LIMITS.values()) <= set(words)


def test_report_lines_carry_the_marker_and_read_back() -> None:
    out = io.StringIO()
    report = runner.Reporter("@@m@@", out)
    report.emit({"kind": "load", "ok": True})
    report.test(0, False, "no", "AssertionError", runner.MEMORY)
    report.test(1, False, "", runner.DEADLINE, "no such limit")
    report.emit({"kind": "done", "behaviour": "abc", "skipped": 0})
    lines = out.getvalue().splitlines()
    assert lines[0] == '@@m@@{"kind": "load", "ok": true}'
    read = parse_report("noise\n" + out.getvalue() + "@@other@@{}\n", "@@m@@")
    assert read.loaded and read.finished and read.behaviour == "abc"
    assert read.outcomes[0].output == "no" and read.outcomes[0].error == "AssertionError"
    assert read.outcomes[0].limit is SandboxLimit.MEMORY
    assert read.outcomes[1].limit is SandboxLimit.NONE  # a word the assessor does not know names no limit


FIB = """
import sys

print("hello from the candidate", flush=True)

def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a

def shout():
    print("chatty")
"""
TESTS = [
    TaskTest(name="doctest 1", kind="doctest", source="fib(10)", want="55"),
    TaskTest(name="assert 2", kind="assert", source="assert fib(3) == 3"),
    TaskTest(name="generated 1", kind="assert", source="assert candidate(1) == 1", generated=True),
    TaskTest(name="generated 2", kind="assert", source="assert shout() is None", generated=True),
]


def _plan(deadline_s: float = 4.0) -> Plan:
    return Plan(
        tests=TESTS,
        probes=["fib(10)", "fib(3)", "fib(-1)"],
        entry_points=["fib"],
        alias="fib",
        budget_s=1.0,
        generated_budget_s=0.5,
        probe_budget_s=0.5,
        deadline_s=deadline_s,
    )


def _run_as_program(tmp_path: Path, code: str, plan: Plan) -> subprocess.CompletedProcess[str]:
    """The runner as the sandbox runs it: ``main.py`` with its input files beside it, no site, no project."""
    execution = build_execution(code, build_spec(plan))
    (tmp_path / "main.py").write_text(execution.program, encoding="utf-8")
    for name, text in execution.files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-I", "-S", str(tmp_path / "main.py")], capture_output=True, text=True, timeout=30, check=False
    )


def test_the_module_runs_as_a_program_on_its_input_files(tmp_path: Path) -> None:
    execution = build_execution(FIB, build_spec(_plan()))
    done = _run_as_program(tmp_path, FIB, _plan())
    assert done.returncode == 0, done.stderr
    assert "hello from the candidate" in done.stdout  # not a result line: ignored
    assert "chatty" not in done.stdout  # the candidate's prints go nowhere while tests run
    report = parse_report(done.stdout, _marker_of(done.stdout))
    assert report.loaded and report.finished and report.skipped == 0
    assert [report.outcomes[i].passed for i in range(4)] == [True, False, True, True]
    assert report.outcomes[1].output == "AssertionError: left side was 2"
    expected = runner.Observations(3)
    expected.values = ["55", "2", "0"]
    assert report.behaviour == expected.digest()
    assert execution.program == Path(runner.__file__).read_text(encoding="utf-8")
    assert set(execution.files) == {runner.INPUT_FILE}
    data = json.loads(execution.files[runner.INPUT_FILE])
    assert data["marker"] == execution.marker and data["code"] == FIB
    assert data["spec"] == json.loads(build_spec(_plan()))


def _marker_of(stdout: str) -> str:
    found = re.search(r"@@swarm-[0-9a-f]{16}@@", stdout)
    assert found is not None, stdout
    return found.group(0)


def test_a_program_past_its_soft_deadline_reports_tests_not_run(tmp_path: Path) -> None:
    done = _run_as_program(tmp_path, FIB, _plan(deadline_s=0.0))
    report = parse_report(done.stdout, _marker_of(done.stdout))
    assert report.finished and report.skipped == 4
    assert all(report.outcomes[i].error == runner.DEADLINE for i in range(4))
    assert all(report.outcomes[i].limit is SandboxLimit.WALL_TIME for i in range(4))


def test_a_candidate_that_does_not_load_says_why(tmp_path: Path) -> None:
    done = _run_as_program(tmp_path, "raise KeyError('gone')\n", _plan())
    report = parse_report(done.stdout, _marker_of(done.stdout))
    assert report.loaded is False and report.load_error == "KeyError: 'gone'" and not report.finished
    assert report.load_limit is SandboxLimit.NONE
    done = _run_as_program(tmp_path, "raise MemoryError\n", _plan())
    report = parse_report(done.stdout, _marker_of(done.stdout))
    assert (report.loaded, report.load_error, report.load_limit) == (False, "MemoryError", SandboxLimit.MEMORY)


def test_the_execution_reports_the_cpu_and_memory_it_used(tmp_path: Path) -> None:
    busy = FIB + "BIG = b'x' * (40 * 1024 * 1024)\nSPIN = sum(i * i for i in range(2_000_000))\n"
    busy_done = _run_as_program(tmp_path, busy, _plan())
    idle_done = _run_as_program(tmp_path, FIB, _plan())
    busy_report = parse_report(busy_done.stdout, _marker_of(busy_done.stdout))
    idle_report = parse_report(idle_done.stdout, _marker_of(idle_done.stdout))
    # The 40 MiB the candidate held is in its peak, and the loop it ran in its CPU time.
    assert busy_report.peak_rss_kb >= idle_report.peak_rss_kb + 40 * 1024 * 0.9
    assert busy_report.cpu_ms > idle_report.cpu_ms > 0
    # A candidate that does not load still says what it used.
    failed = _run_as_program(tmp_path, "raise KeyError('gone')\n", _plan())
    assert parse_report(failed.stdout, _marker_of(failed.stdout)).peak_rss_kb > 0


def test_marker_lookalikes_in_the_code_are_just_code(tmp_path: Path) -> None:
    code = FIB + "NOTE = '__MARK__ __CODE__ __SPEC__ @@swarm-0000@@'\n"
    done = _run_as_program(tmp_path, code, _plan())
    report = parse_report(done.stdout, _marker_of(done.stdout))
    assert report.finished and report.outcomes[0].passed


@pytest.mark.parametrize("backend", ["local", "runloop"])
async def test_each_sandbox_backend_runs_the_execution(backend: str) -> None:
    """bubblewrap, and Runloop's way of shipping files (the fake Runloop API runs the script here)."""
    async with contextlib.AsyncExitStack() as stack:
        if backend == "runloop":
            fake = await stack.enter_async_context(FakeRunloopAPI())
            config = sandbox_config(fake, cap=65536)
        else:
            config = SandboxConfig(max_slots=1, warm_workers=1)
        sandbox = open_sandbox(config)
        stack.push_async_callback(sandbox.aclose)
        await sandbox.probe()
        execution = build_execution(FIB, build_spec(_plan()))
        result = await sandbox.run(execution.program, 5.0, execution.files)
    report = parse_report(result.stdout, execution.marker)
    assert result.exit_code == 0 and report.finished, result
    assert [report.outcomes[i].passed for i in range(4)] == [True, False, True, True]
    expected = runner.Observations(3)
    expected.values = ["55", "2", "0"]
    assert report.behaviour == expected.digest()


DEPTH = """
import sys

def depth():
    n, frame = 0, sys._getframe(1)
    while frame is not None:
        n, frame = n + 1, frame.f_back
    return n

AT_LOAD = depth()
"""


def test_the_candidate_runs_at_the_call_depth_it_always_did(tmp_path: Path) -> None:
    """Frames between the top level and the candidate decide where a deep recursion stops: pinned.

    Measured with the original in-string runner (plain ``python -I -S main.py``; the sandbox's
    launcher adds its own frames on top of these).
    """
    tests = [
        TaskTest(name="doctest", kind="doctest", source="depth()", want="0"),  # through a probe
        TaskTest(name="assert", kind="assert", source="assert depth() == 0"),  # the left side, re-evaluated
        TaskTest(name="load", kind="assert", source="assert AT_LOAD == 0"),
    ]
    plan = replace(_plan(), tests=tests, probes=["depth()"], entry_points=["depth"], alias="")
    done = _run_as_program(tmp_path, DEPTH, plan)
    report = parse_report(done.stdout, _marker_of(done.stdout))
    assert [report.outcomes[i].output for i in range(3)] == [
        "expected 0, got 9",
        "AssertionError: left side was 5",
        "AssertionError: left side was 3",
    ]
