"""``swarm run --test`` / ``--tests-file``: how a tests file splits into tests, and the messages for
tests that cannot be attached (pure rules: no server, no model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm_cli.attached_tests import AttachedTestsError, collect, read_tests_file, split_tests
from swarm_cli.main import build_parser
from swarmlib import attached_test_error

FILE = """\
# tests for fib
import math

assert fib(0) == 0
assert fib(10) == 55, "the tenth"

assert [fib(n) for n in range(5)] == [
    0, 1, 1, 2, 3,  # a comment inside
]
x = fib(3)
def helper(n):
    return fib(n) + fib(n + 1)
assert helper(3) == fib(5)
for n in range(3):
    assert fib(n) <= math.factorial(n) + 1
"""


def test_each_top_level_assert_is_one_test_with_the_setup_above_it() -> None:
    tests = split_tests(FILE, "t.py")
    assert tests[0] == "import math\nassert fib(0) == 0"
    assert tests[1] == 'import math\nassert fib(10) == 55, "the tenth"'
    # A multi-line assert stays one test, as written (its inner comment included).
    assert tests[2] == "import math\nassert [fib(n) for n in range(5)] == [\n    0, 1, 1, 2, 3,  # a comment inside\n]"
    assert tests[3] == (
        "import math\nx = fib(3)\ndef helper(n):\n    return fib(n) + fib(n + 1)\nassert helper(3) == fib(5)"
    )
    # A compound statement holding an assert is a test too.
    assert tests[4].endswith("for n in range(3):\n    assert fib(n) <= math.factorial(n) + 1")
    assert len(tests) == 5
    assert all(attached_test_error(t) is None for t in tests)
    assert "# tests for fib" not in "".join(tests)  # comments between statements are dropped


def test_a_file_that_does_not_parse_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.py"
    path.write_text("assert f(1) == 1\n\nassert f(2 == 2\n")
    with pytest.raises(AttachedTestsError, match=r"tests file .*bad\.py, line 3, column \d+: .*fix that line"):
        read_tests_file(path)
    with pytest.raises(AttachedTestsError, match=r"does not exist: check the path given to --tests-file"):
        read_tests_file(tmp_path / "missing.py")
    with pytest.raises(AttachedTestsError, match=r"holds no assert statement"):
        split_tests("x = 1\n# assert nothing\n", "empty.py")
    with pytest.raises(
        AttachedTestsError, match=r"r\.py is not valid Python: 'return' outside function \(line 1\): fix that line"
    ):
        split_tests("return 1\nassert f(1)\n", "r.py")  # parses, does not compile
    latin1 = tmp_path / "latin1.py"
    latin1.write_bytes(b"assert f('\xe9') == 1\n")
    with pytest.raises(AttachedTestsError, match="not UTF-8"):
        read_tests_file(latin1)


def test_test_flags_are_checked_and_come_before_the_file(tmp_path: Path) -> None:
    path = tmp_path / "t.py"
    path.write_text("assert f(2) == 3\n")
    assert collect(["  assert f(1) == 2 ", "x = f(0)\nassert x == 1"], str(path)) == [
        "assert f(1) == 2",
        "x = f(0)\nassert x == 1",
        "assert f(2) == 3",
    ]
    assert collect(None, None) == []
    with pytest.raises(AttachedTestsError, match=r"--test #2 is not valid Python: invalid syntax \(line 1\)"):
        collect(["assert f(1) == 2", "assert f(1) = 2"], None)
    with pytest.raises(AttachedTestsError, match=r"--test #1 holds no assert statement"):
        collect(["f(1) == 2"], None)
    with pytest.raises(AttachedTestsError, match=r"--test #1 is empty"):
        collect([" "], None)


def test_the_run_command_takes_the_flags() -> None:
    args = build_parser().parse_args(["run", "task", "--test", "assert a", "--test", "assert b", "--tests-file", "f"])
    assert args.test == ["assert a", "assert b"] and args.tests_file == "f"
    args = build_parser().parse_args(["run", "--estimate", "task", "--test", "assert a"])
    assert args.estimate and args.test == ["assert a"]


def test_cli_exits_2_before_any_rpc(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from swarm_cli.main import main

    # Nothing listens on port 9: a request sent would fail with exit 3, not 2.
    target = ["--target", "127.0.0.1:9"]
    assert main([*target, "run", "t", "--tests-file", str(tmp_path / "nope.py")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*target, "run", "t", "--test", "assert (", "--estimate"]) == 2
    assert "--test #1 is not valid Python" in capsys.readouterr().err
