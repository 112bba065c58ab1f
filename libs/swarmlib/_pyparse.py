"""Parsing untrusted Python text without letting it crash the service.

Model replies, tasks and candidates are untrusted: deeply nested code (``"not " * 10000``, a
3000-term sum) makes ``ast.parse``/``compile`` raise ``RecursionError`` or ``MemoryError``, and
code that parses can still be too deep for ``ast.unparse`` or a recursive ``NodeTransformer``.
Those are not bugs of the service, so they must read as "does not parse", never as INTERNAL.
"""

from __future__ import annotations

import ast

# Everything the parser/compiler raises for bad input: syntax, NUL bytes, nesting, size.
_PARSE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError)


def parse_python(code: str) -> ast.Module | None:
    """The module's AST, or None when ``code`` does not parse (including too deeply nested code)."""
    try:
        return ast.parse(code)
    except _PARSE_ERRORS:
        return None


def unparse_python(node: ast.AST) -> str | None:
    """``ast.unparse(node)``, or None when the tree is too deep to turn back into source."""
    try:
        return ast.unparse(node)
    except (RecursionError, MemoryError):
        return None


def compile_error(code: str, filename: str = "<string>") -> str | None:
    """Why ``code`` does not compile (``"invalid syntax (line 3)"``), or None when it compiles.

    Unlike ``parse_python`` this runs the whole compiler, so it also catches errors found after
    parsing (``return`` outside a function, misplaced ``nonlocal``).
    """
    try:
        compile(code, filename, "exec")
    except SyntaxError as exc:
        return f"{exc.msg} (line {exc.lineno})" if exc.lineno else str(exc.msg)
    except (RecursionError, MemoryError):
        return "code is nested too deeply to parse"
    except ValueError as exc:
        return str(exc)
    return None


def attached_test_error(test: str) -> str | None:
    """Why ``test`` cannot be one of the user's attached tests, or None when it can.

    An attached test is Python that compiles and holds at least one ``assert`` (setup lines
    before it are fine): anything else could judge no candidate, so the CLI and the
    orchestrator refuse it up front rather than let the assessor skip it unseen.
    """
    problem = compile_error(test.strip())
    if problem is not None:
        return f"is not valid Python: {problem}"
    tree = parse_python(test.strip())
    if tree is None or not any(isinstance(node, ast.Assert) for node in ast.walk(tree)):
        return "holds no assert statement (write it as `assert f(1) == 2`)"
    return None
