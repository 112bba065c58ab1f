"""Plain-text explanation of how the clusters differ, for a human and for a refinement prompt.

Embeddings say *that* responses differ, not *how*; a refiner (or a reader) needs the how: which
approach each group took and what the code of the two main groups actually disagrees on. Every
part is derived from the code alone, so the same input always gives the same text.
"""

from __future__ import annotations

import ast
import difflib
from collections.abc import Sequence

from swarmlib import parse_python

from .candidate import Candidate
from .clustering import Collation
from .normalise import strip_comments_and_docstrings

MAX_DIFF_LINES = 40
_MEMO_DECORATORS = {"lru_cache", "cache", "cached", "memoize", "memoise", "memoized", "memoised"}
_MEMO_NAME_HINTS = ("memo", "cache")


def _decorator_name(node: ast.expr) -> str:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Name):
        return target.id
    return ""


def _recursive_functions(tree: ast.Module) -> list[str]:
    found: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for sub in ast.walk(node):
            func = sub.func if isinstance(sub, ast.Call) else None
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if called == node.name:
                found.append(node.name)
                break
    return found


def _imports(tree: ast.Module) -> list[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.update(f"{node.module or ''}.{alias.name}".lstrip(".") for alias in node.names)
    return sorted(names)


def _memoisation(tree: ast.Module) -> str:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                if _decorator_name(decorator) in _MEMO_DECORATORS:
                    return f"memoised with @{_decorator_name(decorator)}"
    for node in ast.walk(tree):
        name = node.id if isinstance(node, ast.Name) else node.arg if isinstance(node, ast.arg) else ""
        if any(hint in name.lower() for hint in _MEMO_NAME_HINTS):
            return f"memo table {name!r}"
    return ""


def _syntax_error_line(code: str) -> str:
    """`` (line N)`` for a plain syntax error; empty when the parser gave up for another reason."""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return f" (line {exc.lineno})" if exc.lineno else ""
    except (ValueError, RecursionError, MemoryError):
        return ""
    return ""


def characterise_code(code: str) -> str:
    """A one-line summary of a program's approach: structure, imports, size."""
    lines = sum(1 for line in strip_comments_and_docstrings(code).splitlines() if line.strip())
    tree = parse_python(code)
    if tree is None:
        return f"code does not parse{_syntax_error_line(code)}; {lines} lines"
    traits: list[str] = []
    functions = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    classes = [n.name for n in tree.body if isinstance(n, ast.ClassDef)]
    if functions:
        traits.append("defines " + ", ".join(f"{name}()" for name in functions))
    if classes:
        traits.append("classes " + ", ".join(classes))
    recursive = _recursive_functions(tree)
    if recursive:
        traits.append("recursive (" + ", ".join(recursive) + ")")
    loops = sum(isinstance(n, ast.For | ast.AsyncFor | ast.While) for n in ast.walk(tree))
    comprehensions = sum(isinstance(n, ast.comprehension) for n in ast.walk(tree))
    if loops:
        traits.append(f"{loops} loop{'s' if loops > 1 else ''}")
    if comprehensions:
        traits.append(f"{comprehensions} comprehension{'s' if comprehensions > 1 else ''}")
    if not recursive and not loops and not comprehensions:
        traits.append("straight-line (no loops or recursion)")
    if any(isinstance(n, ast.Yield | ast.YieldFrom) for n in ast.walk(tree)):
        traits.append("generator")
    memo = _memoisation(tree)
    if memo:
        traits.append(memo)
    imports = _imports(tree)
    traits.append("imports " + ", ".join(imports) if imports else "no imports")
    raised = sorted({_decorator_name(n.exc) for n in ast.walk(tree) if isinstance(n, ast.Raise) and n.exc} - {""})
    if raised:
        traits.append("raises " + ", ".join(raised))
    traits.append(f"{lines} line{'s' if lines != 1 else ''}")
    return "; ".join(traits)


def characterise(candidate: Candidate) -> str:
    """Code is characterised by its AST; a prose-only reply by its length."""
    if candidate.has_code:
        return characterise_code(candidate.code)
    words = len(candidate.text.split())
    return f"prose only, no code; {words} word{'s' if words != 1 else ''}"


def excerpt_diff(a: Candidate, b: Candidate, *, max_lines: int = MAX_DIFF_LINES) -> list[str]:
    """Unified diff of two responses without comments and docstrings, capped at ``max_lines``."""
    left = strip_comments_and_docstrings(a.source).splitlines() if a.has_code else a.source.strip().splitlines()
    right = strip_comments_and_docstrings(b.source).splitlines() if b.has_code else b.source.strip().splitlines()
    diff = list(difflib.unified_diff(left, right, fromfile=a.id, tofile=b.id, lineterm="", n=2))
    if len(diff) > max_lines:
        return [*diff[:max_lines], f"... ({len(diff) - max_lines} more diff lines)"]
    return diff


MAX_DESCRIBED_CLUSTERS = 8


def explain(candidates: Sequence[Candidate], collation: Collation, threshold: float) -> str:
    """The analysis text: a verdict line, one line per cluster, then a diff of the two largest."""
    total = len(candidates)
    count = len(collation.clusters)
    largest = len(collation.clusters[0].members)
    verdict = "reached" if collation.reached else "not reached"
    basis = (
        "by identical outputs on every probe input"
        if collation.basis == "behaviour"
        else f"at cosine similarity >= {threshold:.2f}"
    )
    lines = [
        f"{total} response{'s' if total != 1 else ''} in {count} cluster{'s' if count != 1 else ''} "
        f"{basis}; consensus {verdict} "
        f"(largest cluster holds {largest}/{total} = {collation.share:.0%})."
    ]
    for cluster_id, cluster in enumerate(collation.clusters[:MAX_DESCRIBED_CLUSTERS]):
        ids = ", ".join(candidates[i].id for i in cluster.members)
        rep = candidates[cluster.representative]
        lines.append(
            f"Cluster {cluster_id} ({len(cluster.members)}: {ids}; representative {rep.id}, "
            f"cohesion {cluster.cohesion:.2f}): {characterise(rep)}."
        )
    if count > MAX_DESCRIBED_CLUSTERS:
        rest = collation.clusters[MAX_DESCRIBED_CLUSTERS:]
        lines.append(f"... {len(rest)} smaller cluster(s) with {sum(len(c.members) for c in rest)} response(s).")
    if count == 1:
        lines.append("All responses take the same approach; there is no competing cluster to diff.")
        return "\n".join(lines)
    first = candidates[collation.clusters[0].representative]
    second = candidates[collation.clusters[1].representative]
    diff = excerpt_diff(first, second)
    lines.append(f"Diff between the representatives of clusters 0 and 1 ({first.id} -> {second.id}):")
    lines.extend(diff or ["(identical once comments and docstrings are removed)"])
    return "\n".join(lines)
