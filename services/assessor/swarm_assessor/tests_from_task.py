"""Find the executable checks a task already states: doctest examples and ``assert`` lines.

Users write tests in the task's own words; taking them from there means the assessor judges
every candidate by the same yardstick the user had in mind, with no model-written tests.
"""

from __future__ import annotations

import ast
import builtins
import doctest
import re
from dataclasses import dataclass, replace

from swarmlib import parse_python, task_code, unparse_python

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


_CALL_START = re.compile(r"\b([A-Za-z_]\w*)\(")
# What joins a call to its stated result in task prose: "f(x) == y", "f(x) ==> y", "f(x) => y",
# "f(x) -> y", "f(x) ➞ y", "f(x) = y", "f(x) returns y", "f(x) should return y", "f(x)  # => y".
_ARROW = re.compile(
    r"\s*(?:#\s*)?(?:==>|=>|->|➞|→|==|=(?!=)|returns|should\s+return|should\s+be|gives|is)\s*",
    re.IGNORECASE,
)
_BOOLEAN_WORDS = {"true": "True", "false": "False", "none": "None"}
_OPERATOR_STARTS = set("+-*/%<>=&|^@")


def _literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _call_end(line: str, open_paren: int) -> int | None:
    """Index just past the parenthesis that closes the one at ``open_paren`` (quotes respected)."""
    depth, quote, index = 0, "", open_paren
    while index < len(line):
        char = line[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return None


def _expected_value(rest: str) -> str | None:
    """The longest prefix of ``rest`` that is a Python literal ("true"/"false" read as booleans)."""
    rest = rest.split(" #", 1)[0].strip()
    rest = _BOOLEAN_WORDS.get(rest.rstrip(".,;").lower(), rest)
    cuts = [len(rest)] + [i for i in range(len(rest) - 1, 0, -1) if rest[i] in ",;.() "]
    for cut in cuts:
        if rest[cut:].strip()[:1] in _OPERATOR_STARTS:
            continue  # "19 - 5 - 6 = 8" is arithmetic being explained, not the value 19
        text = rest[:cut].strip().rstrip(".,;")
        text = _BOOLEAN_WORDS.get(text.lower(), text)
        if not text:
            continue
        node = parse_python(text)
        if node is None or len(node.body) != 1 or not isinstance(node.body[0], ast.Expr):
            continue
        if _literal(node.body[0].value):
            return text
    return None


def _stated_equalities(task: str) -> list[str]:
    """Checks stated in prose, such as "fib(0) == 0" or "add(2, 3) ➞ 5", as ``assert`` statements.

    Only calls whose arguments and expected value are all literals count, so a definition like
    ``fib(n) == fib(n - 1) + fib(n - 2)`` is never mistaken for a test.
    """
    found: list[str] = []
    for line in task.splitlines():
        stripped = line.strip()
        if stripped.startswith((">>>", "...", "def ", "return ")):
            continue
        if stripped.startswith("assert") and parse_python(stripped) is not None:
            continue  # a real assert statement: ``_assert_statements`` has it
        for match in _CALL_START.finditer(line):
            end = _call_end(line, match.end() - 1)
            if end is None:
                continue
            arrow = _ARROW.match(line, end)
            if arrow is None or arrow.end() == end:
                continue
            expected = _expected_value(line[arrow.end() :])
            if expected is None:
                continue
            call = parse_python(line[match.start() : end])
            if call is None or len(call.body) != 1 or not isinstance(call.body[0], ast.Expr):
                continue
            node = call.body[0].value
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and not node.keywords
                and all(_literal(arg) for arg in node.args)
            ):
                continue
            found.append(f"assert {ast.unparse(node)} == {expected}")
    return found


_FOR_INPUT = re.compile(
    r"^\s*For\s+(?P<args>[A-Za-z_]\w*\s*=.+?)\s*,?\s+(?:the\s+)?(?:output|result)\s+should\s+be\s+(?P<want>.+)$",
    re.IGNORECASE,
)


_INPUT = re.compile(r"^\s*Input\s*:\s*(?P<args>\S.*)$", re.IGNORECASE)
_OUTPUT = re.compile(r"^\s*Output\s*:\s*(?P<want>\S.*)$", re.IGNORECASE)


def _parameters(task: str) -> dict[str, list[str]]:
    tree = parse_python(task_code(task))
    if tree is None:
        return {}
    return {
        node.name: [a.arg for a in node.args.posonlyargs + node.args.args]
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def _call_of(name: str, params: list[str], args: str) -> str | None:
    """``name(...)`` from example arguments: literals by position, or ``p = literal`` for every parameter.

    Named arguments are written positionally in the signature's order, so a candidate that renames
    a parameter still runs the example.
    """
    call = parse_python(f"f({args.strip().rstrip(',')})")
    if call is None or len(call.body) != 1 or not isinstance(call.body[0], ast.Expr):
        return None
    node = call.body[0].value
    if not isinstance(node, ast.Call) or not all(_literal(a) for a in [*node.args, *(k.value for k in node.keywords)]):
        return None
    if node.keywords:
        given = {k.arg: k.value for k in node.keywords if k.arg is not None}
        if node.args or sorted(given) != sorted(params) or len(given) != len(node.keywords):
            return None
        return f"{name}({', '.join(ast.unparse(given[p]) for p in params)})"
    if len(node.args) != len(params):
        return None
    return f"{name}({', '.join(ast.unparse(a) for a in node.args)})"


def _examples_by_parameter(task: str) -> list[str]:
    """Examples stated as inputs and outputs rather than calls, as asserts on the task's one function.

    Two common shapes: "For lst = [1, 2] the output should be 5" on one line, and an
    "Input: arr = [1, 2], k = 1" line followed by an "Output: [2]" line.
    """
    functions = _parameters(task)
    if len(functions) != 1:
        return []
    [(name, params)] = functions.items()
    lines = task.splitlines()
    found: list[str] = []
    for index, line in enumerate(lines):
        pair: tuple[str, str] | None = None
        match = _FOR_INPUT.match(line)
        if match is not None:
            pair = (match["args"], match["want"])
        elif (given := _INPUT.match(line)) is not None:
            following = [x for x in lines[index + 1 : index + 3] if x.strip()][:1]
            output = _OUTPUT.match(following[0]) if following else None
            if output is not None:
                pair = (given["args"], output["want"])
        if pair is None:
            continue
        call = _call_of(name, params, pair[0])
        expected = _expected_value(pair[1])
        if call is not None and expected is not None:
            found.append(f"assert {call} == {expected}")
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


def _is_check(source: str) -> bool:
    """A lone comparison such as ``f([]) == 0``: written as a doctest, it is an assertion."""
    tree = parse_python(source)
    return (
        tree is not None
        and len(tree.body) == 1
        and isinstance(tree.body[0], ast.Expr)
        and isinstance(tree.body[0].value, ast.Compare)
        and all(isinstance(op, ast.Eq | ast.Is | ast.In) for op in tree.body[0].value.ops)
    )


def tests_from_task(task: str) -> list[TaskTest]:
    """The task's tests, doctests first, without duplicates (an assert restating a doctest counts once)."""
    tests: list[TaskTest] = []
    seen: set[str] = set()
    for example in _doctest_examples(task):
        source = example.source.strip()
        want = _clean_want(example.want)
        if not want and example.exc_msg is None and _is_check(source):
            want = "True"  # ">>> f(x) == y" with no output line states that the comparison holds
        key = canonical_key(TaskTest("", "doctest", source, want, example.exc_msg))
        if key in seen:
            continue
        seen.add(key)
        number = len(tests) + 1
        if example.exc_msg is not None:
            exc_type = example.exc_msg.split(":", 1)[0].strip()
            name = f"doctest {number}: {source} raises {exc_type}"
        elif want and not (want == "True" and _is_check(source)):
            name = f"doctest {number}: {source} == {want}"
        else:
            name = f"doctest {number}: {source}"
        tests.append(TaskTest(clip(name), "doctest", source, want, example.exc_msg))
    for statement in _assert_statements(task) + _stated_equalities(task) + _examples_by_parameter(task):
        key = _canonical(statement)
        if key in seen:
            continue
        seen.add(key)
        number = len(tests) + 1
        shown = statement.removeprefix("assert ").strip()
        tests.append(TaskTest(clip(f"assert {number}: {shown}"), "assert", statement))
    return tests


def _names_defined(code: str) -> set[str]:
    tree = parse_python(code)
    if tree is None:
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def call_the_entry_point(tests: list[TaskTest], task: str, entry_points: list[str]) -> list[TaskTest]:
    """Examples that call the function by another name call the task's one function instead.

    Task authors rename a function and forget an example ("def sorted_list_sum" above
    "assert list_sort([...]) => [...]"). Such an example would fail for every candidate and give
    no probe; when the task defines exactly one function and the example's called name exists
    nowhere (not in the task, not a builtin), it can only mean that function.
    """
    if len(entry_points) != 1:
        return tests
    entry = entry_points[0]
    known = _names_defined(task_code(task)) | set(dir(builtins)) | {entry}
    renamed: list[TaskTest] = []
    for test in tests:
        tree = parse_python(test.source)
        called = (
            {
                node.func.id
                for node in ast.walk(tree)
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id not in known
            }
            if tree is not None
            else set()
        )
        if tree is None or len(called) != 1 or _names_defined(test.source) & called:
            renamed.append(test)
            continue
        stand_in = called.pop()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and node.id == stand_in:
                node.id = entry
        source = unparse_python(tree) or test.source
        renamed.append(replace(test, name=clip(test.name.replace(stand_in, entry)), source=source))
    return renamed
