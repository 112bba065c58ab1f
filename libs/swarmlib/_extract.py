"""Turn a model's reply into a runnable Python program.

Replies come in three shapes: fenced markdown (often with prose and a usage example around the
code), bare code with prose before or after it, and completion-style bodies that continue the
task's own code (HumanEval prompts). Chat replies also drop imports and helpers that the task
already defined; those are taken from the task so the program runs on its own.
"""

from __future__ import annotations

import ast
import re
import textwrap

from ._pyparse import parse_python

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PY_LANGS = {"", "python", "py", "python3", "py3"}
_STOP_LINES = ("\nif __name__", "\nprint(", "\nassert ", "\n# Test", "\n# Example", "\n# test", "\n# example")


def _parses(code: str) -> bool:
    return parse_python(code) is not None


def _defined_names(code: str) -> set[str]:
    tree = parse_python(code)
    if tree is None:
        return set()
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def _used_names(code: str) -> set[str]:
    tree = parse_python(code)
    if tree is None:
        return set()
    return {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)} | {
        node.value.id for node in ast.walk(tree) if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }


def task_code(task: str) -> str:
    """The Python code in a task: the task itself when it parses, else its fenced blocks."""
    if _parses(task) and _defined_names(task):
        return task
    blocks = [body for lang, body in _FENCE.findall(task) if lang.lower() in _PY_LANGS and _parses(body)]
    return "\n".join(blocks)


def entry_points(task: str) -> list[str]:
    """Functions the task asks for: those it defines (HumanEval style) or names in ``name(...)`` form."""
    tree = parse_python(task_code(task))
    if tree is not None:
        defs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        if defs:
            return defs
    named = re.findall(r"\b(?:function|method|def)\s+`?([A-Za-z_]\w*)\s*\(", task)
    return list(dict.fromkeys(named))


def _fenced_blocks(reply: str) -> list[str]:
    return [body for lang, body in _FENCE.findall(reply) if lang.lower() in _PY_LANGS]


def _best_block(blocks: list[str], wanted: list[str]) -> str:
    """Prefer the block that defines what the task wants, then any parsing block with a def."""
    parsing = [b for b in blocks if _parses(b)]
    for block in parsing:
        if wanted and any(name in _defined_names(block) for name in wanted):
            return block
    with_defs = [b for b in parsing if re.search(r"^\s*(def|class)\s", b, re.MULTILINE)]
    if with_defs:
        return max(with_defs, key=len)
    return max(parsing or blocks, key=len)


# Characters the span search may parse for one reply: far more than a real reply needs, and a
# bound on a hostile one (thousands of lines that each look like a definition) that would
# otherwise take minutes.
_SPAN_PARSE_BUDGET = 1_000_000


def _syntax_error_line(code: str) -> int | None:
    """None when ``code`` parses, else the line of its error (0 when the parser did not say)."""
    try:
        ast.parse(code)
    except SyntaxError as exc:
        return exc.lineno or 0
    except (ValueError, RecursionError, MemoryError):
        return 0
    return None


def _longest_code_span(reply: str) -> str:
    """From prose with unfenced code: the longest run of lines that parses and defines something.

    A span that fails at line L fails however it goes on past L, so the search for one start skips
    straight to the spans that end before L.
    """
    lines = reply.splitlines()
    best = ""
    budget = _SPAN_PARSE_BUDGET
    starts = [i for i, line in enumerate(lines) if re.match(r"(def|class|import|from|@)\b", line)]
    for start in starts:
        end = len(lines)
        while end > start:
            chunk = "\n".join(lines[start:end])
            if len(chunk) <= len(best) or budget < len(chunk):
                break
            budget -= len(chunk)
            error_line = _syntax_error_line(chunk)
            if error_line is None:
                if _defined_names(chunk):
                    best = chunk
                    break
                end -= 1
            elif 0 < error_line <= end - start:
                end = start + error_line - 1
            else:
                end -= 1
    return best


def _cut_at_stop_lines(code: str) -> str:
    cut = len(code)
    for stop in _STOP_LINES:
        index = code.find(stop)
        if index != -1:
            cut = min(cut, index)
    return code[:cut]


def _as_completion(reply: str, prompt_code: str, wanted: list[str]) -> str | None:
    """A reply that continues the task's code (an indented body) becomes task + body."""
    if not prompt_code or not reply.strip():
        return None
    # A whole solution that happens to be indented (pasted from a list item) is not a body.
    if any(name in _defined_names(textwrap.dedent(reply)) for name in wanted):
        return None
    first = next((line for line in reply.splitlines() if line.strip()), "")
    if not first.startswith((" ", "\t")):
        return None
    joined = prompt_code.rstrip("\n") + "\n" + reply
    joined = _cut_at_stop_lines(joined)
    return joined if _parses(joined) else None


def _provided_names(node: ast.stmt) -> set[str]:
    """Names a top-level statement of the task makes available (imports, defs, simple assignments)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        return {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return {node.name}
    if isinstance(node, ast.Assign):
        return {t.id for t in node.targets if isinstance(t, ast.Name)}
    return set()


def _add_missing_from_task(code: str, prompt_code: str) -> str:
    """Prepend the task's imports and top-level helpers that the code uses but does not define.

    Dependencies are followed transitively: a helper taken from the task may itself need an import
    or another helper of the task (``is_prime`` using ``math``), and the program must run alone.
    """
    tree = parse_python(prompt_code) if prompt_code and _parses(code) else None
    if tree is None:
        return code
    defined = _defined_names(code)
    chosen: set[int] = set()
    changed = True
    while changed:
        changed = False
        segments = [ast.get_source_segment(prompt_code, tree.body[i]) or "" for i in sorted(chosen)]
        used = _used_names("\n".join([*segments, code]))
        for index, node in enumerate(tree.body):
            if index in chosen or ast.get_source_segment(prompt_code, node) is None:
                continue
            names = _provided_names(node)
            if names & used and not names <= defined:
                chosen.add(index)
                changed = True
    if not chosen:
        return code
    needed = [ast.get_source_segment(prompt_code, tree.body[i]) or "" for i in sorted(chosen)]
    return "\n".join(needed) + "\n\n" + code


def extract_code(reply: str, task: str = "") -> str:
    """The runnable program in ``reply`` for ``task``; empty when the reply holds no code."""
    prompt_code = task_code(task)
    wanted = entry_points(task)
    completion = _as_completion(reply, prompt_code, wanted)
    if completion is not None:
        return completion.strip() + "\n"
    blocks = _fenced_blocks(reply)
    if blocks:
        code = _best_block(blocks, wanted)
    else:
        bare = textwrap.dedent(reply)
        code = bare if _parses(bare) and _defined_names(bare) else _longest_code_span(bare)
    code = textwrap.dedent(code).strip()
    if not code:
        return ""
    return _add_missing_from_task(code, prompt_code).strip() + "\n"
