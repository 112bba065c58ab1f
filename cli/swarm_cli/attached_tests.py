"""``swarm run --test`` and ``--tests-file``: the user's own tests, attached to the run.

They travel in ``RunSwarmRequest.tests`` and count as visible tests (the assessor runs each
candidate against them). Everything is checked here, before any RPC, so a typo costs no model
call and the message names the flag or the file and line to fix.

A tests file is Python: each top-level statement that holds an ``assert`` is one test, kept as
written (``ast.get_source_segment``, so a multi-line assert stays one test). Statements without
an assert (imports, helpers, ``x = f(3)``) are setup: each test carries every setup statement
above it, so ``import math`` at the top serves every assert below. Blank lines and comments
between statements are ignored.
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

from swarmlib import attached_test_error, compile_error


class AttachedTestsError(ValueError):
    """Tests that cannot be attached; the message says which flag, file or line, and what to do."""


def add_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--test",
        action="append",
        metavar="ASSERT",
        help='attach one of your own tests, e.g. --test "assert f(1) == 2" (repeatable); '
        "the swarm runs every answer against it",
    )
    run.add_argument(
        "--tests-file",
        metavar="FILE",
        help="attach the tests in FILE: Python, one test per top-level assert (multi-line asserts are fine; "
        "imports and other statements above an assert are run before it)",
    )


def collect(tests: list[str] | None, tests_file: str | None) -> list[str]:
    """The ``--test`` values, then the file's tests, each checked; raises ``AttachedTestsError``."""
    attached: list[str] = []
    for number, test in enumerate(tests or [], start=1):
        if not test.strip():
            raise AttachedTestsError(
                f"--test #{number} is empty: give an assert statement, e.g. --test 'assert f(1) == 2'"
            )
        problem = attached_test_error(test)
        if problem is not None:
            raise AttachedTestsError(f"--test #{number} {problem}: fix it (quote the whole statement in the shell)")
        attached.append(test.strip())
    if tests_file:
        attached.extend(read_tests_file(Path(tests_file)))
    return attached


def read_tests_file(path: Path) -> list[str]:
    """The tests in a tests file; raises ``AttachedTestsError`` when it cannot be read or parsed."""
    try:
        source = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AttachedTestsError(f"tests file {path} does not exist: check the path given to --tests-file") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise AttachedTestsError(f"cannot read tests file {path}: {reason}") from None
    return split_tests(source, str(path))


def split_tests(source: str, name: str) -> list[str]:
    """Split a tests file's text into tests (see the module docstring); ``name`` is for messages."""
    try:
        tree = ast.parse(source, filename=name)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        raise AttachedTestsError(
            f"tests file {name}, {where}: {exc.msg}: fix that line (the file must be Python: one assert per test)"
        ) from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise AttachedTestsError(
            f"tests file {name} cannot be parsed as Python: {exc or 'nested too deeply'}"
        ) from None
    problem = compile_error(source, name)  # what parses may still not compile ('return' at the top)
    if problem is not None:
        raise AttachedTestsError(f"tests file {name} is not valid Python: {problem}: fix that line")
    setup: list[str] = []
    tests: list[str] = []
    for statement in tree.body:
        segment = ast.get_source_segment(source, statement)
        if segment is None:  # pragma: no cover - every parsed statement has a position
            continue
        if any(isinstance(node, ast.Assert) for node in ast.walk(statement)):
            test = "\n".join([*setup, segment])
            problem = attached_test_error(test)
            if problem is not None:
                raise AttachedTestsError(
                    f"tests file {name}, line {statement.lineno}: the test {problem}: fix that test"
                )
            tests.append(test)
        else:
            setup.append(segment)
    if not tests:
        raise AttachedTestsError(f"tests file {name} holds no assert statement: write each test as `assert f(1) == 2`")
    return tests
