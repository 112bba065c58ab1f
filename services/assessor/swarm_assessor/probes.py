"""Behavioural probing: the entry-point calls the tests make, evaluated on every candidate.

A probe is the canonical source (``ast.unparse``) of one call of an entry point found in any
test, e.g. ``fib(10)`` in ``assert fib(10) == 55`` or in the doctest ``>>> fib(10)``. Calls that
use a name the test binds itself (``fib(i)`` in ``[fib(i) for i in range(5)]``) are not probes,
since they mean nothing on their own. Each candidate evaluates every probe once, inside its own
sandbox run, and the ordered observations are digested into its behaviour signature.

To avoid calling the same thing twice, tests are instrumented: each probe call inside a test is
replaced by ``__swarm_probe__(i, lambda: <call>)``, which records the observation the first
time the test evaluates it and otherwise just makes the call. The test therefore runs exactly as
written (same evaluation order, short-circuits and exceptions, a fresh call every time); probes
that no test reached are evaluated on their own afterwards.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from swarmlib import parse_python, unparse_python

from .generated_tests import bound_names, is_builtin
from .runner import PROBE_FUNCTION


def _targets(tree: ast.AST, entry_points: list[str]) -> set[str]:
    if entry_points:
        return set(entry_points)
    return {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not is_builtin(node.func.id)
    }


def _probe_calls(tree: ast.AST, entry_points: list[str]) -> list[str]:
    targets = _targets(tree, entry_points)
    bound = bound_names(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in targets):
            continue
        if any(isinstance(sub, ast.Name) and sub.id in bound for sub in ast.walk(node)):
            continue
        text = unparse_python(node)
        if text is not None:
            found.append(text)
    return found


def collect_probes(sources: Iterable[str], entry_points: list[str]) -> list[str]:
    """The distinct probe inputs of ``sources`` (test sources), in order of first appearance.

    With no entry points known, calls of any non-builtin function by name are probes.
    """
    probes: dict[str, None] = {}
    for source in sources:
        tree = parse_python(source)
        if tree is not None:
            probes.update(dict.fromkeys(_probe_calls(tree, entry_points)))
    return list(probes)


class _Instrument(ast.NodeTransformer):
    def __init__(self, index: dict[str, int], allowed: set[str]) -> None:
        self._index = index
        self._allowed = allowed

    def visit_Call(self, node: ast.Call) -> ast.AST:
        key = unparse_python(node) if isinstance(node.func, ast.Name) else None
        self.generic_visit(node)
        if key is None or key not in self._allowed:
            return node
        thunk = ast.Lambda(
            args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]), body=node
        )
        return ast.Call(
            func=ast.Name(id=PROBE_FUNCTION, ctx=ast.Load()),
            args=[ast.Constant(value=self._index[key]), thunk],
            keywords=[],
        )


def instrument(source: str, index: dict[str, int], entry_points: list[str]) -> str:
    """``source`` with its probe calls routed through ``__swarm_probe__``; unchanged if none.

    ``index`` maps probe text to its position. Only calls that are probes of this very source
    are rewritten (a call using a name bound in the test stays as it is).
    """
    tree = parse_python(source)
    if tree is None:
        return source
    allowed = {p for p in _probe_calls(tree, entry_points) if p in index}
    if not allowed:
        return source
    rewritten = _Instrument(index, allowed).visit(tree)
    text = unparse_python(ast.fix_missing_locations(rewritten))
    return source if text is None else text


def _variants(value: object) -> list[object]:
    """Small, type-preserving neighbours of a literal argument: edge cases and near misses.

    Programs that agree on the examples often part ways on an empty input, a negative number,
    the next number but one or a reversed list; those inputs split clusters that the examples
    alone would merge.
    """
    if isinstance(value, bool):
        return [not value]
    if isinstance(value, int):
        numbers = (0, 1, -value, value + 1, value - 1, value + 2, value * 2)
        return list(dict.fromkeys(v for v in numbers if v != value and abs(v) <= 10**6))
    if isinstance(value, float):
        return [v for v in (0.0, -value, value * 2.5) if v != value and abs(v) <= 1e9]
    if isinstance(value, str):
        return [v for v in ("", value[::-1], value + value[:1], value.upper()) if v != value]
    if isinstance(value, list | tuple):
        kind = type(value)
        options: list[object] = [kind(), kind(reversed(value)), kind(value[:1]), kind(list(value) + list(value[:1]))]
        return [v for v in options if v != value]
    if isinstance(value, dict):
        return [{}] if value else []
    return []


def mutate_probes(probes: list[str], limit: int) -> list[str]:
    """Extra probe inputs: each probe call with one literal argument changed (see ``_variants``).

    Only calls whose arguments are all literals are mutated; results are new, distinct calls,
    round-robin over the original probes so every example contributes, at most ``limit``.
    """
    existing = set(probes)
    per_probe: list[list[str]] = []
    for probe in probes:
        tree = parse_python(probe)
        call = tree.body[0].value if tree and tree.body and isinstance(tree.body[0], ast.Expr) else None
        if not isinstance(call, ast.Call) or call.keywords:
            per_probe.append([])
            continue
        try:
            args = [ast.literal_eval(arg) for arg in call.args]
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            per_probe.append([])
            continue
        mutants: list[str] = []
        for position, arg in enumerate(args):
            for variant in _variants(arg):
                changed = [*args[:position], variant, *args[position + 1 :]]
                text = f"{ast.unparse(call.func)}({', '.join(repr(a) for a in changed)})"
                if len(text) <= 300 and text not in existing:
                    existing.add(text)
                    mutants.append(text)
        per_probe.append(mutants)
    chosen: list[str] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(m) for m in per_probe):
        for mutants in per_probe:
            if depth < len(mutants) and len(chosen) < limit:
                chosen.append(mutants[depth])
        depth += 1
    return chosen
