"""Tests from outside the task text: the swarm's generated asserts and the user's attached tests.

Generated tests are noisy (CodeT-style: a model writes asserts from the prompt alone), so they
are cleaned before any candidate sees them: one parsing ``assert`` per test, calling the task's
entry point, no ``_____`` placeholders left for a value the model did not know, no duplicates
(by canonical form, also against the visible tests), at most ``cap`` of them in first-seen order.
After execution the service drops the ones no candidate could even run (``runnable``).

Attached tests are the user's own and count as visible: any snippet that parses and contains an
``assert`` is kept as one test.
"""

from __future__ import annotations

import ast
import builtins
import logging
from collections.abc import Iterable

from swarmlib import parse_python, unparse_python

from .tests_from_task import TaskTest, canonical_key, clip

log = logging.getLogger(__name__)

ASSERTION_ERROR = "AssertionError"
TIMEOUT = "timeout"
_BUILTINS = frozenset(dir(builtins))


def bound_names(tree: ast.AST) -> set[str]:
    """Names a statement binds itself (comprehension targets, walrus, lambda parameters)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
        elif isinstance(node, ast.Lambda):
            args = node.args
            names.update(a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs))
            names.update(a.arg for a in (args.vararg, args.kwarg) if a is not None)
    return names


def _has_placeholder(tree: ast.AST) -> bool:
    """A name made only of underscores that the statement does not bind itself (``_________``)."""
    bound = bound_names(tree)
    return any(
        isinstance(node, ast.Name) and not node.id.strip("_") and node.id not in bound for node in ast.walk(tree)
    )


def calls_function(tree: ast.AST, names: Iterable[str]) -> bool:
    """Whether ``tree`` calls one of ``names`` by name; with no names, whether it calls anything."""
    wanted = set(names)
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            if not wanted:
                return True
            if isinstance(node.func, ast.Name) and node.func.id in wanted:
                return True
    return False


def clean_generated(raw: Iterable[str], entry_points: list[str], visible: list[TaskTest], cap: int) -> list[TaskTest]:
    """The generated tests worth running, in first-seen order, at most ``cap``.

    Kept: a string that parses to exactly one ``assert`` statement, calls an entry point (any
    function when the task names none), holds no underscore-only placeholder name, and whose
    canonical form (``ast.unparse``, without the assert's message) is neither a duplicate nor
    one of the visible tests.
    """
    seen = {canonical_key(t) for t in visible}
    kept: list[TaskTest] = []
    for text in raw:
        if len(kept) >= cap:
            break
        tree = parse_python(text.strip())
        if tree is None or len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
            continue
        statement = ast.Assert(test=tree.body[0].test, msg=None)
        if _has_placeholder(statement) or not calls_function(statement, entry_points):
            continue
        source = unparse_python(statement)
        if source is None or source in seen:
            continue
        seen.add(source)
        kept.append(TaskTest(source, "assert", source, generated=True))
    return kept


def name_generated(tests: list[TaskTest]) -> list[TaskTest]:
    """Number the generated tests ``generated 1: ...`` in their final order."""
    return [
        TaskTest(clip(f"generated {n}: {t.source.removeprefix('assert ').strip()}"), t.kind, t.source, generated=True)
        for n, t in enumerate(tests, start=1)
    ]


def attached_tests(raw: Iterable[str], visible: list[TaskTest]) -> list[TaskTest]:
    """The user's attached tests as visible tests numbered after the task's own.

    Each snippet that parses and contains an ``assert`` is one test (a single assert is stored
    in canonical form); duplicates of the task's tests or of each other count once; anything
    else is skipped with a warning, since no candidate could be judged by it.
    """
    seen = {canonical_key(t) for t in visible}
    tests: list[TaskTest] = []
    for position, text in enumerate(raw):
        tree = parse_python(text.strip())
        if tree is None or not any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
            # Its text is the user's (it may hold what the task holds): the log gets where and how long.
            log.warning("attached test %d (%d characters) skipped: not Python with an assert", position, len(text))
            continue
        single = len(tree.body) == 1 and isinstance(tree.body[0], ast.Assert)
        source = (unparse_python(tree.body[0]) if single else unparse_python(tree)) or text.strip()
        if source in seen:
            continue
        seen.add(source)
        number = len(visible) + len(tests) + 1
        shown = source.removeprefix("assert ").strip() if single else source
        tests.append(TaskTest(clip(f"attached {number}: {shown}"), "assert", source))
    return tests


def runnable(errors: Iterable[str | None]) -> bool:
    """Whether some candidate could run a test: it passed, failed its assert, or timed out.

    ``errors`` holds one entry per candidate that executed: None for a pass, else the exception
    type name (or ``"timeout"``). A test that raises anything else for everyone (NameError,
    TypeError from a wrong arity, ...) is the test's fault, not the candidates'.
    """
    return any(e is None or e in (ASSERTION_ERROR, TIMEOUT) for e in errors)


def is_builtin(name: str) -> bool:
    """Whether ``name`` is a Python builtin (never a probe target when the task names no function)."""
    return name in _BUILTINS
