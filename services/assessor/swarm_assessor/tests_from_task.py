"""Find the executable checks a task already states: doctest examples and ``assert`` lines.

Users write tests in the task's own words; taking them from there means the assessor judges
every candidate by the same yardstick the user had in mind, with no model-written tests.
"""

from __future__ import annotations

import ast
import doctest
import re
from dataclasses import dataclass

from swarmlib import parse_python, unparse_python

_NAME_CAP = 100
_MAX_ASSERT_LINES = 12
_FENCE_LINE = re.compile(r"^\s*```")


@dataclass(frozen=True)
class TaskTest:
    """One check: ``source`` runs in the candidate's namespace; doctests compare to ``want``."""

    name: str
    kind: str  # "doctest" or "assert"
    source: str
    want: str = ""
    exc_msg: str | None = None
    generated: bool = False


def clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _NAME_CAP else flat[: _NAME_CAP - 1] + "…"


def _canonical(source: str) -> str:
    tree = parse_python(source)
    text = unparse_python(tree) if tree is not None else None
    return " ".join(source.split()) if text is None else text


def canonical_key(test: TaskTest) -> str:
    """What makes two tests the same check: the canonical assert they amount to."""
    if test.kind != "doctest":
        return _canonical(test.source)
    if test.exc_msg is not None:
        return f"raises {_canonical(test.source)}"
    return _canonical(f"assert ({test.source}) == ({test.want})") if test.want else _canonical(test.source)


def _doctest_examples(task: str) -> list[doctest.Example]:
    """All ``>>>`` examples; paragraphs with inconsistent indentation are parsed one by one."""
    parser = doctest.DocTestParser()
    try:
        return parser.get_examples(task)
    except ValueError:
        pass
    examples: list[doctest.Example] = []
    for block in re.split(r"\n\s*\n", task):
        try:
            examples.extend(parser.get_examples(block))
        except ValueError:
            continue
    return examples


def _assert_statements(task: str) -> list[str]:
    """``assert`` statements anywhere in the text (prose or fenced), joined across lines if needed."""
    lines = [line for line in task.splitlines() if not _FENCE_LINE.match(line)]
    found: list[str] = []
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped.startswith("assert ") and not stripped.startswith("assert("):
            continue
        for end in range(index + 1, min(len(lines), index + _MAX_ASSERT_LINES) + 1):
            chunk = "\n".join(part.strip() for part in lines[index:end])
            tree = parse_python(chunk)
            if tree is None:
                continue
            if len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert):
                found.append(unparse_python(tree.body[0]) or chunk)
            break
    return found


_STATED_CALL = re.compile(r"\b[A-Za-z_]\w*\([^()\n]*\)\s*==\s*")


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _stated_equalities(task: str) -> list[str]:
    """Checks stated in prose, such as "fib(0) == 0, fib(1) == 1", as ``assert`` statements.

    Only calls whose arguments and expected value are all literals count, so a definition like
    ``fib(n) == fib(n - 1) + fib(n - 2)`` is never mistaken for a test.
    """
    found: list[str] = []
    for line in task.splitlines():
        stripped = line.strip()
        if stripped.startswith((">>>", "...", "assert")):
            continue
        for match in _STATED_CALL.finditer(line):
            rest = line[match.end() :]
            depth, end = 0, len(rest)
            for index, char in enumerate(rest):
                if char in "([{":
                    depth += 1
                elif char in ")]}":
                    if depth == 0:
                        end = index
                        break
                    depth -= 1
                elif char in ",;" and depth == 0:
                    end = index
                    break
            expression = f"{match.group(0)}{rest[:end].rstrip().rstrip('.')}"
            tree = parse_python(expression)
            if tree is None or len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
                continue
            compare = tree.body[0].value
            if not (
                isinstance(compare, ast.Compare)
                and isinstance(compare.left, ast.Call)
                and isinstance(compare.left.func, ast.Name)
                and all(_literal(arg) for arg in compare.left.args)
                and not compare.left.keywords
                and len(compare.comparators) == 1
                and _literal(compare.comparators[0])
            ):
                continue
            found.append(f"assert {unparse_python(compare) or expression}")
    return found


def _clean_want(want: str) -> str:
    """Drop a docstring's closing quotes that the parser reads as expected output (raw task text)."""
    lines = want.strip().splitlines()
    while lines and lines[-1].strip() in {'"""', "'''", "```"}:
        lines.pop()
    if lines:
        for quotes in ('"""', "'''"):
            if lines[-1].rstrip().endswith(quotes):
                lines[-1] = lines[-1].rstrip()[: -len(quotes)].rstrip()
    return "\n".join(lines).strip()


def tests_from_task(task: str) -> list[TaskTest]:
    """The task's tests, doctests first, without duplicates (an assert restating a doctest counts once)."""
    tests: list[TaskTest] = []
    seen: set[str] = set()
    for example in _doctest_examples(task):
        source = example.source.strip()
        want = _clean_want(example.want)
        key = canonical_key(TaskTest("", "doctest", source, want, example.exc_msg))
        if key in seen:
            continue
        seen.add(key)
        number = len(tests) + 1
        if example.exc_msg is not None:
            exc_type = example.exc_msg.split(":", 1)[0].strip()
            name = f"doctest {number}: {source} raises {exc_type}"
        elif want:
            name = f"doctest {number}: {source} == {want}"
        else:
            name = f"doctest {number}: {source}"
        tests.append(TaskTest(clip(name), "doctest", source, want, example.exc_msg))
    for statement in _assert_statements(task) + _stated_equalities(task):
        key = _canonical(statement)
        if key in seen:
            continue
        seen.add(key)
        number = len(tests) + 1
        shown = statement.removeprefix("assert ").strip()
        tests.append(TaskTest(clip(f"assert {number}: {shown}"), "assert", statement))
    return tests
