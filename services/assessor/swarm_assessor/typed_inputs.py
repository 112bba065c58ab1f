"""Probe inputs without expected outputs, for tasks where no test gives any (no visible, no generated test).

Behaviour clusters need only inputs: two programs that return the same values on the same
inputs agree, whatever the right value is (MBR-exec). When no test calls the entry point there
is nothing to probe, every program is alone and agreement says nothing; these inputs fill that gap:

- **the instances' own calls**: ``print(f(...))`` or ``assert f(...) == ...`` lines a model wrote
  below its function, at module level, with literal arguments only (they are realistic inputs:
  the model chose them for this task);
- **the signature**: sample values for each parameter from its type hint (``int``, ``str``,
  ``list[int]``, nested generics, tuples, dicts, ``Optional``, ...) or its default value, with
  quoted strings and numbers from the docstring added to the samples of their type.

Nothing here says what a call should return. Many inputs are invalid for a task (``0`` for "the
n-th prime"); the service drops an input on which most programs raise (``informative``), so only
inputs the programs accept can split or join clusters. Docs: docs/selection.md ("Evidence
without tests").
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Sequence

from swarmlib import parse_python, task_code

from .probes import mutate_probes

_INT = [1, 5, 0, 3, -3, 10, 2, 7]
_FLOAT = [1.5, 2.0, 0.0, -3.25, 10.0, 0.5]
_STR = ["abc", "Hello World", "", "aAbB12", "python", "a"]
_BOOL = [True, False]
_ANY: list[object] = [1, "abc", [1, 2, 3], 0]
_MAX_CALL_CHARS = 300
_QUOTED = re.compile(r"""(?<![\w'"])(['"])([^'"\n]{1,30})\1(?![\w'"])""")
_FENCE = re.compile(r"```[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])")


def _name(node: ast.expr) -> str:
    """``List`` for ``List``, ``typing.List`` and ``t.List``; lower-cased, so ``list`` and ``List`` match."""
    if isinstance(node, ast.Name):
        return node.id.lower()
    if isinstance(node, ast.Attribute):
        return node.attr.lower()
    return ""


def _args_of(node: ast.Subscript) -> list[ast.expr]:
    return list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]


def _sequences(items: list[object]) -> list[list[object]]:
    """Lists built from element samples: a few elements, reversed with a repeat, empty, one, more."""
    if not items:
        return [[], [1, 2, 3]]
    first = items[:3]
    again = [*reversed(items[:4]), items[0]]
    return [first, again, [], items[:1], items[:6]]


def samples(annotation: ast.expr | None, strings: Sequence[str] = (), numbers: Sequence[float] = ()) -> list[object]:
    """Sample values for a parameter of this type hint, typical values first; ``[]`` when unknown.

    ``strings`` and ``numbers`` (literals of the task's text) come first among the values of
    their type: the task's own examples are the likeliest valid inputs.
    """
    if annotation is None:
        return []
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):  # a hint written as a string
        parsed = parse_python(annotation.value)
        if parsed is not None and len(parsed.body) == 1 and isinstance(parsed.body[0], ast.Expr):
            return samples(parsed.body[0].value, strings, numbers)
        return []
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):  # X | None
        left, right = samples(annotation.left, strings, numbers), samples(annotation.right, strings, numbers)
        return [*left, *right] if left or right else []
    if isinstance(annotation, ast.Constant) and annotation.value is None:
        return [None]
    if isinstance(annotation, ast.Subscript):
        return _generic(annotation, strings, numbers)
    name = _name(annotation)
    ints = [int(n) for n in numbers if float(n).is_integer()]
    scalars: dict[str, list[object]] = {
        "int": list(dict.fromkeys([*ints, *_INT])),
        "float": list(dict.fromkeys([*(float(n) for n in numbers), *_FLOAT])),
        "str": list(dict.fromkeys([*strings, *_STR])),
        "bool": list(_BOOL),
        "any": list(_ANY),
        "object": list(_ANY),
        "none": [None],
    }
    if name in scalars:
        return scalars[name]
    if name in {"list", "sequence", "iterable", "tuple", "set"}:  # unparameterised containers
        return [[1, 2, 3], [3, 1, 2], [], [5]] if name != "tuple" else [(1, 2, 3), (3, 1, 2), (), (5,)]
    if name == "dict":
        return [{"a": 1, "b": 2}, {}]
    return []


def _generic(node: ast.Subscript, strings: Sequence[str], numbers: Sequence[float]) -> list[object]:
    name = _name(node.value)
    args = _args_of(node)
    inner = [samples(a, strings, numbers) for a in args]
    if name in {"optional"}:
        return [*inner[0], None] if inner[0] else []
    if name == "union":
        merged = [v for values in inner for v in values]
        return merged
    if name in {"list", "sequence", "iterable", "collection", "mutablesequence"}:
        return [list(s) for s in _sequences(inner[0])] if inner[0] else []
    if name in {"set", "frozenset", "abstractset"}:
        kind = frozenset if name == "frozenset" else set
        return [kind(v for v in s if _hashable(v)) for s in _sequences(inner[0])] if inner[0] else []
    if name == "tuple":
        if len(args) == 2 and isinstance(args[1], ast.Constant) and args[1].value is Ellipsis:
            return [tuple(s) for s in _sequences(inner[0])] if inner[0] else []
        if not inner or any(not values for values in inner):
            return []
        width = max(len(values) for values in inner)
        return [tuple(values[(i + p) % len(values)] for p, values in enumerate(inner)) for i in range(min(width, 5))]
    if name in {"dict", "mapping", "mutablemapping"} and len(inner) == 2 and all(inner):
        keys = [k for k in inner[0] if _hashable(k)]
        values = inner[1]
        if not keys:
            return []
        one = {keys[i]: values[i % len(values)] for i in range(min(3, len(keys)))}
        two = {keys[i]: values[(i + 1) % len(values)] for i in range(min(2, len(keys)))}
        return [one, two, {}]
    return []


def _hashable(value: object) -> bool:
    try:
        hash(value)
    except TypeError:
        return False
    return True


def _entry_function(task: str, entry: str) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    tree = parse_python(task_code(task))
    if tree is None:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == entry:
            return node
    return None


def _docstring_literals(function: ast.FunctionDef | ast.AsyncFunctionDef) -> tuple[list[str], list[float]]:
    text = ast.get_docstring(function) or ""
    strings = list(dict.fromkeys(m.group(2) for m in _QUOTED.finditer(text)))[:3]
    numbers = list(dict.fromkeys(float(m.group(0)) for m in _NUMBER.finditer(text)))[:3]
    return strings, numbers


def _default_samples(default: ast.expr | None) -> list[object]:
    if default is None:
        return []
    try:
        value = ast.literal_eval(default)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return []
    return [value]


def signature_calls(task: str, entry: str, limit: int) -> list[str]:
    """Up to ``limit`` calls of ``entry`` built from its signature in the task (``[]`` if unknown).

    The first call takes every parameter's first (most typical) sample; call ``i`` then takes
    sample ``i + p`` of parameter ``p`` (cycling), so calls differ in every parameter. A parameter
    with no usable hint or default makes the signature unusable: a guessed value would make most
    calls invalid.
    """
    function = _entry_function(task, entry)
    if function is None or limit <= 0:
        return []
    params = [*function.args.posonlyargs, *function.args.args]
    if params and params[0].arg in {"self", "cls"}:
        return []
    defaults: list[ast.expr | None] = [None] * (len(params) - len(function.args.defaults))
    defaults += list(function.args.defaults)
    strings, numbers = _docstring_literals(function)
    per_param: list[list[object]] = []
    for param, default in zip(params, defaults, strict=True):
        values = samples(param.annotation, strings, numbers) or _default_samples(default)
        if not values:
            return []
        per_param.append(values)
    if not per_param:
        return [f"{entry}()"]
    width = max(len(values) for values in per_param)
    calls: dict[str, None] = {}
    for i in range(max(width, limit)):
        args = [values[(i + p * (i > 0)) % len(values)] for p, values in enumerate(per_param)]
        text = f"{entry}({', '.join(repr(a) for a in args)})"
        if len(text) <= _MAX_CALL_CHARS:
            calls[text] = None
        if len(calls) >= limit:
            break
    return list(calls)


def _literal_call(node: ast.Call) -> bool:
    try:
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            ast.literal_eval(arg)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return all(k.arg is not None for k in node.keywords) and not any(isinstance(a, ast.Starred) for a in node.args)


def code_blocks(reply: str) -> list[str]:
    """The fenced blocks of a raw reply: usage examples often sit in a block of their own."""
    return _FENCE.findall(reply)


def own_calls(codes: Iterable[str], entry_points: Sequence[str], limit: int) -> list[str]:
    """Calls of an entry point with literal arguments that the programs make at module level.

    These are the models' own test lines (``print(f(3))``, ``assert f([1, 2]) == 3``); calls inside
    a function or class are the program's logic, not an input. First-seen order, at most ``limit``.
    """
    wanted = set(entry_points)
    found: dict[str, None] = {}
    for code in codes:
        tree = parse_python(code)
        if tree is None:
            continue
        for statement in tree.body:
            if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                continue
            for node in ast.walk(statement):
                if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in wanted):
                    continue
                text = ast.unparse(node)
                if _literal_call(node) and len(text) <= _MAX_CALL_CHARS:
                    found.setdefault(text, None)
                if len(found) >= limit:
                    return list(found)
    return list(found)


def informative(observations: Sequence[Sequence[str | None]], first: int) -> list[bool]:
    """Which probes count in the behaviour signature: all up to ``first``; from ``first`` on (inputs
    without a test behind them) only those on which most programs return a value.

    ``observations[c][p]`` is program ``c``'s observation of probe ``p`` (``!Name`` for a raise,
    ``!timeout``; None: not observed). An input on which every program raises, or most do, is
    invalid for the task: the few programs that accept it are not more right for that, and
    counting how each one fails would split programs that agree on every valid input.
    """
    count = max((len(row) for row in observations), default=0)
    keep = [True] * count
    for probe in range(first, count):
        seen = [row[probe] for row in observations if probe < len(row) and row[probe] is not None]
        values = sum(1 for text in seen if not str(text).startswith("!"))
        keep[probe] = values * 2 > len(seen)
    return keep


def _to_implement(task: str, entry_points: Sequence[str]) -> list[str]:
    """The entry points the task leaves to write (a body of only a docstring, ``pass`` or ``...``),
    else the last one: a task's other functions are given helpers."""
    tree = parse_python(task_code(task))
    open_bodies: list[str] = []
    if tree is not None:
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name in entry_points:
                body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
                if all(isinstance(s, ast.Pass) for s in body):
                    open_bodies.append(node.name)
    return open_bodies or list(entry_points[-1:])


def untested_inputs(task: str, codes: Sequence[str], entry_points: Sequence[str], limit: int) -> list[str]:
    """Up to ``limit`` probe inputs for a task no test calls: the programs' own calls (at most a
    third of ``limit``), then calls from the signature, then neighbours of the own calls
    (``probes.mutate_probes``) to fill what is left."""
    if limit <= 0 or not entry_points:
        return []
    targets = _to_implement(task, entry_points)
    own = own_calls(codes, targets, max(1, limit // 3))
    chosen = dict.fromkeys(own)
    for entry in targets:
        for call in signature_calls(task, entry, limit - len(chosen)):
            chosen.setdefault(call, None)
    if len(chosen) < limit:
        chosen.update(dict.fromkeys(mutate_probes(own, limit - len(chosen))))
    return list(chosen)[:limit]
