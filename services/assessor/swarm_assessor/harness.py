"""Build the program the sandbox runs for one candidate, and read back what it reports.

The candidate is executed as a module that is not ``__main__`` (its demo code stays quiet),
then each test runs on its own with a time budget so one hanging or crashing test cannot hide
the others. Results travel as JSON lines behind a per-execution random marker so ordinary
output of the candidate is ignored; while tests run, the candidate's own prints go nowhere, so a
chatty candidate cannot fill the output cap.

The same run evaluates the probe inputs (see ``probes``) in the candidate's namespace and
reports the digest of their canonical observations (``_observe``): ``repr`` capped at 200
characters with floats rounded to 6 significant digits, sets and dicts in sorted order and
memory addresses removed; ``!ExceptionType`` when the call raised, ``!timeout`` when it ran out
of time. A soft deadline below the wall-clock timeout keeps the report coming for slow
candidates: tests past it are reported as not run, probes past it as ``!timeout``.
"""

from __future__ import annotations

import ast
import json
import re
import secrets
from dataclasses import dataclass

from swarmlib import parse_python, unparse_python

from .probes import instrument
from .tests_from_task import TaskTest

OUTPUT_CAP = 500
GENERATED_OUTPUT_CAP = 160
DEADLINE = "deadline"
_PLACEHOLDER = re.compile(r"\b__(MARK|CODE|SPEC)__\b")

_RUNNER = r"""
import hashlib as _hashlib
import json as _json
import os as _os
import re as _re
import signal as _signal
import sys as _sys
import time as _time
import types as _types

_STARTED = _time.monotonic()

_MARK = __MARK__
_SPEC = _json.loads(__SPEC__)
_CODE = __CODE__
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


class _Sink:
    def write(self, text):
        return len(text)

    def flush(self):
        pass


_OBS_CAP = 200
_ADDRESS = _re.compile(r" at 0x[0-9a-fA-F]+")


def _canon(value, depth):
    kind = type(value)
    if kind is float:
        return "0.0" if value == 0 else repr(float("%.6g" % value))
    if kind is complex:
        return repr(complex(float("%.6g" % value.real), float("%.6g" % value.imag)))
    if kind is str or kind is bytes:
        return repr(value[: _OBS_CAP + 1])
    if kind is int:
        try:
            return repr(value)
        except ValueError:
            return hex(value)
    if depth > 20:
        return "..."
    if kind is list or kind is tuple:
        parts, size = [], 0
        for item in value:
            part = _canon(item, depth + 1)
            parts.append(part)
            size += len(part) + 2
            if size > _OBS_CAP:
                break
        body = ", ".join(parts)
        if kind is list:
            return "[" + body + "]"
        return "(" + body + ("," if len(value) == 1 else "") + ")"
    if kind is set or kind is frozenset:
        if len(value) > 1000:
            return _ADDRESS.sub("", repr(value))[: _OBS_CAP + 1]
        parts = sorted(_canon(item, depth + 1) for item in value)
        body = ", ".join(parts)
        if kind is frozenset:
            return "frozenset({" + body + "})" if parts else "frozenset()"
        return "{" + body + "}" if parts else "set()"
    if kind is dict:
        items = value.items()
        if len(value) <= 1000:
            items = sorted((_canon(k, depth + 1), v) for k, v in items)
        else:
            items = [(_canon(k, depth + 1), v) for k, v in items]
        parts, size = [], 0
        for key, item in items:
            part = key + ": " + _canon(item, depth + 1)
            parts.append(part)
            size += len(part) + 2
            if size > _OBS_CAP:
                break
        return "{" + ", ".join(parts) + "}"
    return _ADDRESS.sub("", repr(value))


def _observe(value):
    try:
        return _canon(value, 0)[:_OBS_CAP]
    except Exception:
        return "!unrepresentable"


_OBS = [None] * len(_SPEC["probes"])


def _probe(index, thunk):
    if _OBS[index] is not None:
        return thunk()
    try:
        value = thunk()
    except _TestTimeout:
        _OBS[index] = "!timeout"
        raise
    except BaseException as exc:
        _OBS[index] = "!" + type(exc).__name__
        raise
    try:
        _OBS[index] = _observe(value)
    except _TestTimeout:
        _OBS[index] = "!timeout"
        raise
    return value


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


def _run_test(test, ns, budget):
    _signal.setitimer(_signal.ITIMER_REAL, budget)
    try:
        problem = _doctest(test, ns) if test["kind"] == "doctest" else _assert(test, ns)
        error = None if problem is None else "AssertionError"
    except _TestTimeout:
        problem, error = "timed out after %gs" % budget, "timeout"
    except BaseException as exc:
        problem, error = _describe(exc), type(exc).__name__
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)
    return problem, error


def _run_probe(source, ns, budget):
    _signal.setitimer(_signal.ITIMER_REAL, budget)
    try:
        value = eval(compile(source, "<probe>", "eval"), ns)
        return _observe(value)
    except _TestTimeout:
        return "!timeout"
    except BaseException as exc:
        return "!" + type(exc).__name__
    finally:
        _signal.setitimer(_signal.ITIMER_REAL, 0)


def _main():
    module = _types.ModuleType("candidate")
    module.__file__ = "/box/candidate.py"
    _sys.modules["candidate"] = module
    try:
        exec(compile(_CODE, "candidate.py", "exec"), module.__dict__)
    except BaseException as exc:
        _emit({"kind": "load", "ok": False, "error": _describe(exc)})
        return
    _emit({"kind": "load", "ok": True})
    ns = dict(module.__dict__)
    alias = _SPEC["alias"]
    if alias and "candidate" not in ns and callable(ns.get(alias)):
        ns["candidate"] = ns[alias]
    ns["__swarm_probe__"] = _probe
    _signal.signal(_signal.SIGALRM, _on_alarm)
    deadline = _STARTED + _SPEC["deadline"]
    skipped = 0
    _sys.stdout = _sys.stderr = _Sink()
    try:
        for index, test in enumerate(_SPEC["tests"]):
            left = deadline - _time.monotonic()
            if left <= 0:
                skipped += 1
                _emit({"kind": "test", "index": index, "passed": False, "output": "", "error": "deadline"})
                continue
            budget = min(test["budget"], left)
            problem, error = _run_test(test, ns, budget)
            output = (problem or "")[: test["cap"]]
            _emit({"kind": "test", "index": index, "passed": problem is None, "output": output, "error": error})
        for index, source in enumerate(_SPEC["probes"]):
            if _OBS[index] is None:
                left = deadline - _time.monotonic()
                _OBS[index] = _run_probe(source, ns, min(_SPEC["probe_budget"], left)) if left > 0 else "!timeout"
    finally:
        _sys.stdout, _sys.stderr = _sys.__stdout__, _sys.__stderr__
    text = _json.dumps(_OBS, ensure_ascii=False)
    digest = _hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    _emit({"kind": "done", "behaviour": digest, "skipped": skipped})


_main()
_OUT.flush()
_os._exit(0)
"""


@dataclass(frozen=True)
class TestOutcome:
    """One test's verdict as reported from inside the sandbox.

    ``error`` is None for a pass, else the exception type name (``AssertionError`` for a wrong
    answer, doctest mismatches included), ``"timeout"``, or ``"deadline"`` when the test was not
    run because the candidate's time was up.
    """

    passed: bool
    output: str
    error: str | None = None


@dataclass(frozen=True)
class Report:
    """What the harness printed: whether the code loaded, and verdicts by test index."""

    loaded: bool | None
    load_error: str
    outcomes: dict[int, TestOutcome]
    finished: bool
    behaviour: str = ""
    skipped: int = 0


def _left_side(statement: str) -> str:
    """For ``assert a == b`` the source of ``a``, so a failure can show what it evaluated to."""
    tree = parse_python(statement)
    node = tree.body[0] if tree is not None and tree.body else None
    if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1:
        return unparse_python(node.test.left) or ""
    return ""


@dataclass(frozen=True)
class Plan:
    """What every candidate of one request runs: tests (visible first), probes, time budgets."""

    tests: list[TaskTest]
    probes: list[str]
    entry_points: list[str]
    alias: str
    budget_s: float
    generated_budget_s: float
    probe_budget_s: float
    deadline_s: float


def _test_specs(plan: Plan) -> list[dict[str, object]]:
    index = {probe: i for i, probe in enumerate(plan.probes)}
    return [
        {
            "kind": t.kind,
            "source": instrument(t.source, index, plan.entry_points),
            "want": t.want,
            "exc_msg": t.exc_msg,
            "left": _left_side(t.source) if t.kind == "assert" else "",
            "budget": plan.generated_budget_s if t.generated else plan.budget_s,
            "cap": GENERATED_OUTPUT_CAP if t.generated else OUTPUT_CAP,
        }
        for t in plan.tests
    ]


def build_spec(plan: Plan) -> str:
    """The part of the program shared by every candidate (tests instrumented once per request)."""
    return json.dumps(
        {
            "cap": OUTPUT_CAP,
            "tests": _test_specs(plan),
            "probes": plan.probes,
            "probe_budget": plan.probe_budget_s,
            "deadline": plan.deadline_s,
            "alias": plan.alias,
        }
    )


def build_program(code: str, shared_spec: str) -> tuple[str, str]:
    """The sandbox program for ``code`` and the marker its result lines start with."""
    marker = f"@@swarm-{secrets.token_hex(8)}@@"
    values = {"MARK": repr(marker), "CODE": repr(code), "SPEC": repr(shared_spec)}
    # One pass, so a placeholder-like string inside the code or a test is never substituted.
    program = _PLACEHOLDER.sub(lambda match: values[match.group(1)], _RUNNER)
    return program, marker


def parse_report(stdout: str, marker: str) -> Report:
    """Collect the marked JSON lines; anything else the candidate printed is ignored."""
    loaded: bool | None = None
    load_error = ""
    outcomes: dict[int, TestOutcome] = {}
    finished = False
    behaviour = ""
    skipped = 0
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
            error = record.get("error")
            outcomes[record["index"]] = TestOutcome(
                bool(record.get("passed")), str(record.get("output", "")), error if isinstance(error, str) else None
            )
        elif kind == "done":
            finished = True
            behaviour = str(record.get("behaviour", ""))
            skipped = record.get("skipped", 0) if isinstance(record.get("skipped"), int) else 0
    return Report(loaded, load_error, outcomes, finished, behaviour, skipped)
