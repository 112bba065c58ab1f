"""Build the program the sandbox runs for one candidate, and read back what it reports.

The candidate is executed as a module that is not ``__main__`` (its demo code stays quiet),
then each test runs on its own with a time budget so one hanging or crashing test cannot hide
the others. Results travel as JSON lines behind a per-execution random marker so ordinary
output of the candidate is ignored.
"""

from __future__ import annotations

import ast
import json
import secrets
from dataclasses import dataclass

from swarmlib import parse_python, unparse_python

from .tests_from_task import TaskTest

OUTPUT_CAP = 500

_RUNNER = r"""
import json as _json
import os as _os
import signal as _signal
import sys as _sys
import types as _types

_MARK = __MARK__
_SPEC = _json.loads(__SPEC__)
_CAP = _SPEC["cap"]
_OUT = _os.fdopen(_os.dup(1), "w", encoding="utf-8")


class _TestTimeout(BaseException):
    pass


def _emit(record):
    _OUT.write(_MARK + _json.dumps(record) + "\n")
    _OUT.flush()


def _describe(exc):
    text = type(exc).__name__
    message = str(exc)
    if message:
        text += ": " + message
    return text if len(text) <= _CAP else text[: _CAP - 1] + "…"


def _on_alarm(signum, frame):
    raise _TestTimeout()


def _capture(run):
    import io
    import contextlib
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        value = run()
    return value, buffer.getvalue()


def _same(got, want):
    return got.strip() == want.strip() or " ".join(got.split()) == " ".join(want.split())


def _doctest(test, ns):
    source, want, exc_msg = test["source"], test["want"], test["exc_msg"]
    try:
        code = compile(source, "<doctest>", "eval")
    except SyntaxError:
        code = None
    try:
        if code is not None:
            value, printed = _capture(lambda: eval(code, ns))
        else:
            value, printed = _capture(lambda: exec(compile(source, "<doctest>", "exec"), ns))
    except _TestTimeout:
        raise
    except BaseException as exc:
        if exc_msg is None:
            raise
        expected = exc_msg.strip()
        got = _describe(exc)
        if got.strip() == expected or type(exc).__name__ == expected.split(":", 1)[0].strip():
            return None
        return "expected " + expected + ", got " + got
    if exc_msg is not None:
        return "expected " + exc_msg.strip() + ", nothing was raised"
    shown = printed + (repr(value) + "\n" if value is not None else "")
    if _same(shown, want):
        return None
    if code is not None and not printed and want:
        try:
            if eval(want, ns) == value:
                return None
        except BaseException:
            pass
    if not want:
        return None if not shown.strip() else "expected no output, got " + shown.strip()[:_CAP]
    got = shown.strip() or "nothing"
    return ("expected " + want.strip() + ", got " + got)[:_CAP]


def _assert(test, ns):
    try:
        exec(compile(test["source"], "<assert>", "exec"), ns)
    except AssertionError as exc:
        if str(exc):
            raise
        left = test.get("left")
        if left:
            try:
                return "AssertionError: left side was " + repr(eval(left, ns))[:_CAP]
            except BaseException:
                pass
        raise
    return None


def _main():
    module = _types.ModuleType("candidate")
    module.__file__ = "/box/candidate.py"
    _sys.modules["candidate"] = module
    try:
        exec(compile(_SPEC["code"], "candidate.py", "exec"), module.__dict__)
    except BaseException as exc:
        _emit({"kind": "load", "ok": False, "error": _describe(exc)})
        return
    _emit({"kind": "load", "ok": True})
    ns = dict(module.__dict__)
    alias = _SPEC["alias"]
    if alias and "candidate" not in ns and callable(ns.get(alias)):
        ns["candidate"] = ns[alias]
    _signal.signal(_signal.SIGALRM, _on_alarm)
    budget = _SPEC["budget"]
    for index, test in enumerate(_SPEC["tests"]):
        _signal.setitimer(_signal.ITIMER_REAL, budget)
        try:
            problem = _doctest(test, ns) if test["kind"] == "doctest" else _assert(test, ns)
        except _TestTimeout:
            problem = "timed out after %gs" % budget
        except BaseException as exc:
            problem = _describe(exc)
        finally:
            _signal.setitimer(_signal.ITIMER_REAL, 0)
        _emit({"kind": "test", "index": index, "passed": problem is None, "output": problem or ""})
    _emit({"kind": "done"})


_main()
_OUT.flush()
_os._exit(0)
"""


@dataclass(frozen=True)
class TestOutcome:
    """One test's verdict as reported from inside the sandbox."""

    passed: bool
    output: str


@dataclass(frozen=True)
class Report:
    """What the harness printed: whether the code loaded, and verdicts by test index."""

    loaded: bool | None
    load_error: str
    outcomes: dict[int, TestOutcome]
    finished: bool


def _left_side(statement: str) -> str:
    """For ``assert a == b`` the source of ``a``, so a failure can show what it evaluated to."""
    tree = parse_python(statement)
    node = tree.body[0] if tree is not None and tree.body else None
    if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1:
        return unparse_python(node.test.left) or ""
    return ""


def build_program(code: str, tests: list[TaskTest], alias: str, budget_s: float) -> tuple[str, str]:
    """The sandbox program for ``code`` and the marker its result lines start with."""
    marker = f"@@swarm-{secrets.token_hex(8)}@@"
    spec = {
        "code": code,
        "alias": alias,
        "budget": budget_s,
        "cap": OUTPUT_CAP,
        "tests": [
            {
                "kind": t.kind,
                "source": t.source,
                "want": t.want,
                "exc_msg": t.exc_msg,
                "left": _left_side(t.source) if t.kind == "assert" else "",
            }
            for t in tests
        ],
    }
    program = _RUNNER.replace("__MARK__", repr(marker)).replace("__SPEC__", repr(json.dumps(spec)))
    return program, marker


def parse_report(stdout: str, marker: str) -> Report:
    """Collect the marked JSON lines; anything else the candidate printed is ignored."""
    loaded: bool | None = None
    load_error = ""
    outcomes: dict[int, TestOutcome] = {}
    finished = False
    for line in stdout.splitlines():
        if not line.startswith(marker):
            continue
        try:
            record = json.loads(line[len(marker) :])
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        kind = record.get("kind")
        if kind == "load":
            loaded = bool(record.get("ok"))
            load_error = str(record.get("error", ""))
        elif kind == "test" and isinstance(record.get("index"), int):
            outcomes[record["index"]] = TestOutcome(bool(record.get("passed")), str(record.get("output", "")))
        elif kind == "done":
            finished = True
    return Report(loaded, load_error, outcomes, finished)
