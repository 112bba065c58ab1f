"""Code normalisation before embedding and diffing.

The embedding model reads code as text, so comments, docstrings, formatting, type hints and the
names a model happened to pick for its locals move the vector as much as a different algorithm
does. Stripping them and renaming locals to positional placeholders leaves the structure
(control flow, calls, operators, imports, function names) for the model to compare.
"""

from __future__ import annotations

import ast

from swarmlib import parse_python, unparse_python

_FUNCTION = (ast.FunctionDef, ast.AsyncFunctionDef)
_SCOPED = (ast.Module, ast.ClassDef, *_FUNCTION)


def _drop_docstrings(tree: ast.Module) -> None:
    for node in ast.walk(tree):
        if not isinstance(node, _SCOPED) or not node.body:
            continue
        first = node.body[0]
        if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
            node.body = node.body[1:] or [ast.Pass()]


def strip_comments_and_docstrings(code: str) -> str:
    """Code without comments, docstrings or formatting quirks; the raw text when it does not parse.

    Used for the human-facing diff, where the names a model chose still carry meaning.
    """
    tree = parse_python(code)
    if tree is None:
        return code.strip()
    _drop_docstrings(tree)
    text = unparse_python(tree)
    return code.strip() if text is None else text


class _LocalRenamer(ast.NodeTransformer):
    """Renames each function's parameters and assigned locals to ``v0, v1, ...`` in source order.

    Function, class, attribute, global and builtin names are kept: they say *what* is computed,
    while local names are the model's whim.
    """

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        return self._rename(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST:
        return self._rename(node)

    def _rename(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.AST:
        args = node.args
        params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
        params += [a for a in (args.vararg, args.kwarg) if a is not None]
        shared = {name for sub in ast.walk(node) if isinstance(sub, ast.Global | ast.Nonlocal) for name in sub.names}
        stored = sorted(
            (sub for sub in ast.walk(node) if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store)),
            key=lambda sub: (sub.lineno, sub.col_offset),
        )
        mapping: dict[str, str] = {}
        for name in [p.arg for p in params] + [s.id for s in stored]:
            if name not in shared and name not in mapping:
                mapping[name] = f"v{len(mapping)}"
        for param in params:
            param.annotation = None
        node.returns = None
        for sub in ast.walk(node):
            if isinstance(sub, ast.arg) and sub.arg in mapping:
                sub.arg = mapping[sub.arg]
            elif isinstance(sub, ast.Name) and sub.id in mapping:
                sub.id = mapping[sub.id]
        return node


def canonical_code(code: str) -> str:
    """The form that gets embedded: stripped, reformatted, locals renamed; raw text when unparsable."""
    tree = parse_python(code)
    if tree is None:
        return code.strip()
    _drop_docstrings(tree)
    try:
        tree = _LocalRenamer().visit(tree)
    except RecursionError:
        # Parses, but too deep for the recursive transformer: fall back to the raw text.
        return code.strip()
    text = unparse_python(tree)
    return code.strip() if text is None else text
