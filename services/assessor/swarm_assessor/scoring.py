"""Static scores of a candidate (completeness, style) and the correctness share from test results.

These are cheap heuristics on purpose: executed tests dominate the overall score (see
``swarmlib.assessment_score``), so the static parts only need to separate a finished, tidy
program from a stub or a mess, not to be a linter.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable

from swarmlib import entry_points, parse_python

MAX_LINE = 100
_SNAKE = re.compile(r"^_{0,2}[a-z][a-z0-9_]*_{0,2}$|^_$")
_CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9_]*$")
_TODO = re.compile(r"#.*\b(TODO|FIXME|XXX)\b")


def parse(code: str) -> ast.Module | None:
    """The module's AST, or None when it does not parse (too deeply nested code included)."""
    return parse_python(code)


def _functions(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]


def _is_placeholder_stmt(stmt: ast.stmt) -> bool:
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return stmt.value.value is Ellipsis or isinstance(stmt.value.value, str)
    return False


def _raises_not_implemented(node: ast.AST) -> bool:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Raise) and sub.exc is not None:
            target = sub.exc.func if isinstance(sub.exc, ast.Call) else sub.exc
            if isinstance(target, ast.Name) and target.id == "NotImplementedError":
                return True
    return False


def has_placeholders(code: str, tree: ast.Module) -> bool:
    """Stub bodies (only pass/.../docstring), NotImplementedError, or TODO markers left in."""
    if _TODO.search(code) or _raises_not_implemented(tree):
        return True
    return any(all(_is_placeholder_stmt(s) for s in fn.body) for fn in _functions(tree))


def _stub_body(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return all(_is_placeholder_stmt(s) for s in fn.body) or (
        _raises_not_implemented(fn) and all(_is_placeholder_stmt(s) or isinstance(s, ast.Raise) for s in fn.body)
    )


def is_stub(code: str, task: str) -> bool:
    """Whether a function the task asks for is left unwritten: its body is only ``pass``, ``...``,
    a docstring or ``raise NotImplementedError`` (any top-level function when the task names none).

    Such a program "runs cleanly" on every input while doing nothing, so with no test it must not
    count as running (``correctness``): the prompt with ``pass`` is not an answer.
    """
    tree = parse(code)
    if tree is None:
        return False
    wanted = set(entry_points(task))
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    chosen = [fn for fn in functions if fn.name in wanted] if wanted else functions
    return any(_stub_body(fn) for fn in chosen)


def _defined_top_level(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def completeness(code: str, task: str) -> float:
    """Present (0.25) + parses (0.25) + defines the task's entry points (0.3) + no stubs (0.2)."""
    if not code.strip():
        return 0.0
    tree = parse(code)
    if tree is None:
        return 0.25
    wanted = entry_points(task)
    defined = _defined_top_level(tree)
    coverage = sum(name in defined for name in wanted) / len(wanted) if wanted else float(bool(tree.body))
    finished = 0.0 if has_placeholders(code, tree) else 1.0
    return 0.5 + 0.3 * coverage + 0.2 * finished


def _share(flags: Iterable[bool]) -> float:
    values = list(flags)
    return sum(values) / len(values) if values else 1.0


def _bound_names(tree: ast.Module) -> list[str]:
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.append(node.name)
            names.extend(a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.append(node.id)
    return names


def _prints_in_functions(tree: ast.Module) -> bool:
    for fn in _functions(tree):
        for sub in ast.walk(fn):
            if isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id == "print":
                return True
    return False


def style(code: str) -> float:
    """Mean of six readability checks, each in [0, 1]; 0 for code that does not parse."""
    tree = parse(code)
    if tree is None or not code.strip():
        return 0.0
    lines = [line for line in code.splitlines() if line.strip()]
    functions = _functions(tree)
    names = _bound_names(tree)
    checks = [
        _share(len(line) <= MAX_LINE for line in lines),
        _share(ast.get_docstring(fn) is not None for fn in functions),
        0.0 if any(isinstance(n, ast.ExceptHandler) and n.type is None for n in ast.walk(tree)) else 1.0,
        _share(bool(_SNAKE.match(n) or _CONSTANT.match(n)) for n in names),
        0.0
        if any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in ast.walk(tree))
        else 1.0,
        0.0 if _prints_in_functions(tree) else 1.0,
    ]
    return sum(checks) / len(checks)


def correctness(passed: int, total: int, ran_cleanly: bool) -> float:
    """Share of passing tests; with no tests, whether the program ran cleanly at all."""
    if total == 0:
        return 1.0 if ran_cleanly else 0.0
    return passed / total
