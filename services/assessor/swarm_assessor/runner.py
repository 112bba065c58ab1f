"""The program the sandbox runs for one candidate: load it, run each test on its own, report.

The assessor ships this file's source as the sandbox's ``main.py`` and its input as one JSON file beside it
(``INPUT_FILE``; see ``harness``). Inside the sandbox nothing of the project is importable (``python -I -S``),
so this module uses the standard library only (and not ``typing`` at run time, whose import alone costs
milliseconds per execution). What it promises (the candidate as a module, isolated tests with time budgets,
the soft deadline, probes and canonical observations, the report lines) is described in docs/assessment.md.
The call depth from the top level down to the candidate's code is part of the behaviour (a deeply recursive
candidate meets the recursion limit at a given depth), so ``main`` calls the per-test functions directly and
each of them adds exactly one frame.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import resource
import signal
import sys
import time
import types

STARTED = time.monotonic()
_USAGE_AT_START = resource.getrusage(resource.RUSAGE_SELF)

TYPE_CHECKING = False
if TYPE_CHECKING:  # ``typing`` is not loaded in the sandbox, and importing it costs milliseconds.
    from collections.abc import Callable
    from typing import Any, TextIO, TypedDict

    class TestSpec(TypedDict):
        """One test as the harness sends it (``harness.build_spec``)."""

        kind: str  # "doctest" or "assert"
        source: str
        want: str
        exc_msg: str | None
        left: str  # for ``assert a == b``, the source of ``a``
        budget: float
        cap: int

    class Spec(TypedDict):
        """What every candidate of one request runs: tests, probes, budgets."""

        cap: int
        tests: list[TestSpec]
        probes: list[str]
        probe_budget: float
        deadline: float
        alias: str
        untested_from: int  # probes from here have no test behind them: observations reported (typed_inputs)


INPUT_FILE = "input.json"  # {"marker": str, "code": str, "spec": Spec}
PROBE_FUNCTION = "__swarm_probe__"
DEADLINE = "deadline"
TIMEOUT = "timeout"
# The limit that stopped a test or the load, in swarmlib.SandboxLimit's words.
NO_LIMIT = "none"
WALL_TIME = "wall_time"
MEMORY = "memory"
FILE_SIZE = "file_size"
TMP_SPACE = "tmp_space"
PROCESSES = "processes"
_ERRNO_LIMITS = {27: FILE_SIZE, 28: TMP_SPACE, 11: PROCESSES}  # EFBIG, ENOSPC, EAGAIN (fork)
TIMEOUT_OBSERVATION = "!timeout"
OBSERVATION_CAP = 200
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class _TestTimeout(BaseException):  # its name shows to a candidate that catches it: keep it
    """Raised by SIGALRM when a test's or a probe's budget runs out."""


def _on_alarm(signum: int, frame: types.FrameType | None) -> None:
    raise _TestTimeout()


class _Sink:
    """Where the candidate's prints go while tests run (a bare object: its attributes are behaviour)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class Reporter:
    """Writes the result lines, each behind the marker, on a copy of the original stdout."""

    def __init__(self, marker: str, out: TextIO) -> None:
        self._marker = marker
        self._out = out

    def emit(self, record: dict[str, object]) -> None:
        self._out.write(self._marker + json.dumps(record) + "\n")
        self._out.flush()

    def test(self, index: int, passed: bool, output: str, error: str | None, limit: str) -> None:
        """One test's line: ``error`` as in ``harness.TestOutcome``, ``limit`` in SandboxLimit's words."""
        self.emit({"kind": "test", "index": index, "passed": passed, "output": output, "error": error, "limit": limit})

    def flush(self) -> None:
        self._out.flush()


def describe(exc: BaseException, cap: int) -> str:
    """``Type: message``, cut to ``cap`` characters."""
    text = type(exc).__name__
    message = str(exc)
    if message:
        text += ": " + message
    return text if len(text) <= cap else text[: cap - 1] + "…"


def limit_of(exc: BaseException) -> str:
    """The sandbox limit an exception says the program hit (``NO_LIMIT`` for an ordinary error)."""
    if isinstance(exc, MemoryError):
        return MEMORY
    if isinstance(exc, OSError) and exc.errno in _ERRNO_LIMITS:
        return _ERRNO_LIMITS[exc.errno]
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        return PROCESSES
    return NO_LIMIT


def canon(value: object, depth: int) -> str:
    """The canonical text of ``value`` (see docs/assessment.md); every branch is part of the digest."""
    # The digest is these exact bytes, so the formatting stays the harness's original "%" form.
    if type(value) is float:
        return "0.0" if value == 0 else repr(float("%.6g" % value))  # noqa: UP031
    if type(value) is complex:
        return repr(complex(float("%.6g" % value.real), float("%.6g" % value.imag)))  # noqa: UP031
    if type(value) is str or type(value) is bytes:
        return repr(value[: OBSERVATION_CAP + 1])
    if type(value) is int:
        try:
            return repr(value)
        except ValueError:
            return hex(value)
    if depth > 20:
        return "..."
    if type(value) is list or type(value) is tuple:
        parts, size = [], 0
        for item in value:
            part = canon(item, depth + 1)
            parts.append(part)
            size += len(part) + 2
            if size > OBSERVATION_CAP:
                break
        body = ", ".join(parts)
        if type(value) is list:
            return "[" + body + "]"
        return "(" + body + ("," if len(value) == 1 else "") + ")"
    if type(value) is set or type(value) is frozenset:
        if len(value) > 1000:
            return _ADDRESS.sub("", repr(value))[: OBSERVATION_CAP + 1]
        members = sorted(canon(item, depth + 1) for item in value)
        body = ", ".join(members)
        if type(value) is frozenset:
            return "frozenset({" + body + "})" if members else "frozenset()"
        return "{" + body + "}" if members else "set()"
    if type(value) is dict:
        if len(value) <= 1000:
            items = sorted((canon(k, depth + 1), v) for k, v in value.items())
        else:
            items = [(canon(k, depth + 1), v) for k, v in value.items()]
        entries, size = [], 0
        for key, item in items:
            entry = key + ": " + canon(item, depth + 1)
            entries.append(entry)
            size += len(entry) + 2
            if size > OBSERVATION_CAP:
                break
        return "{" + ", ".join(entries) + "}"
    return _ADDRESS.sub("", repr(value))


def observe(value: object) -> str:
    """What a probe saw: ``canon`` capped, or ``!unrepresentable`` when even that fails."""
    try:
        return canon(value, 0)[:OBSERVATION_CAP]
    except Exception:
        return "!unrepresentable"


class Observations:
    """Each probe's first observation; ``probe`` is what instrumented tests call (``PROBE_FUNCTION``)."""

    def __init__(self, count: int) -> None:
        self.values: list[str | None] = [None] * count

    def probe(self, index: int, thunk: Callable[[], object]) -> object:
        if self.values[index] is not None:
            return thunk()
        try:
            value = thunk()
        except _TestTimeout:
            self.values[index] = TIMEOUT_OBSERVATION
            raise
        except BaseException as exc:
            self.values[index] = "!" + type(exc).__name__
            raise
        try:
            self.values[index] = observe(value)
        except _TestTimeout:
            self.values[index] = TIMEOUT_OBSERVATION
            raise
        return value

    def digest(self) -> str:
        """The behaviour digest: the first 16 hex digits of the SHA-256 of the observations as JSON."""
        text = json.dumps(self.values, ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def capture(run: Callable[[], object]) -> tuple[object, str]:
    """``run()``'s value and what it printed."""
    import contextlib  # loaded on the first doctest only, as the harness always did
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        value = run()
    return value, buffer.getvalue()


def _same(got: str, want: str) -> bool:
    return got.strip() == want.strip() or " ".join(got.split()) == " ".join(want.split())


def check_doctest(test: TestSpec, ns: dict[str, Any], cap: int) -> tuple[str | None, str]:
    """None when the example shows what it wants (or raises what it expects), else what went wrong.

    The second value is the limit named by an exception raised instead of the expected one.
    """
    source, want, exc_msg = test["source"], test["want"], test["exc_msg"]
    try:
        code = compile(source, "<doctest>", "eval")
    except SyntaxError:
        code = None
    try:
        if code is not None:
            value, printed = capture(lambda: eval(code, ns))
        else:
            value, printed = capture(lambda: exec(compile(source, "<doctest>", "exec"), ns))
    except _TestTimeout:
        raise
    except BaseException as exc:
        if exc_msg is None:
            raise
        expected = exc_msg.strip()
        got = describe(exc, cap)
        if got.strip() == expected or type(exc).__name__ == expected.split(":", 1)[0].strip():
            return None, NO_LIMIT
        return "expected " + expected + ", got " + got, limit_of(exc)
    if exc_msg is not None:
        return "expected " + exc_msg.strip() + ", nothing was raised", NO_LIMIT
    shown = printed + (repr(value) + "\n" if value is not None else "")
    if _same(shown, want):
        return None, NO_LIMIT
    if code is not None and not printed and want:
        try:
            if eval(want, ns) == value:
                return None, NO_LIMIT
        except BaseException:
            pass
    if not want:
        return (None if not shown.strip() else "expected no output, got " + shown.strip()[:cap]), NO_LIMIT
    got = shown.strip() or "nothing"
    return ("expected " + want.strip() + ", got " + got)[:cap], NO_LIMIT


def check_assert(test: TestSpec, ns: dict[str, Any], cap: int) -> str | None:
    """None when the statement runs; a bare failing ``assert a == b`` says what ``a`` was."""
    try:
        exec(compile(test["source"], "<assert>", "exec"), ns)
    except AssertionError as exc:
        if str(exc):
            raise
        left = test.get("left")
        if left:
            try:
                return "AssertionError: left side was " + repr(eval(left, ns))[:cap]
            except BaseException:
                pass
        raise
    return None


def run_test(test: TestSpec, ns: dict[str, Any], budget: float, cap: int) -> tuple[str | None, str | None, str]:
    """The problem (None: passed), the error kind and the limit hit, of one test run under its own time budget."""
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        if test["kind"] == "doctest":
            problem, limit = check_doctest(test, ns, cap)
        else:
            problem, limit = check_assert(test, ns, cap), NO_LIMIT
        error = None if problem is None else "AssertionError"
    except _TestTimeout:
        problem, error, limit = "timed out after %gs" % budget, TIMEOUT, WALL_TIME  # noqa: UP031 (the wording is data)
    except BaseException as exc:
        problem, error = describe(exc, cap), type(exc).__name__
        limit = limit_of(exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return problem, error, limit


def run_probe(source: str, ns: dict[str, Any], budget: float) -> str:
    """The observation of one probe input that no test reached."""
    signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        value = eval(compile(source, "<probe>", "eval"), ns)
        return observe(value)
    except _TestTimeout:
        return TIMEOUT_OBSERVATION
    except BaseException as exc:
        return "!" + type(exc).__name__
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def main(started: float, spec: Spec, code: str, report: Reporter) -> None:
    """Load ``code`` as the module ``candidate``, run every test, then the probes no test reached."""
    module = types.ModuleType("candidate")
    module.__file__ = "/box/candidate.py"
    sys.modules["candidate"] = module
    cap = spec["cap"]
    try:
        exec(compile(code, "candidate.py", "exec"), module.__dict__)
    except BaseException as exc:
        report.emit({"kind": "load", "ok": False, "error": describe(exc, cap), "limit": limit_of(exc)})
        return
    report.emit({"kind": "load", "ok": True})
    ns = dict(module.__dict__)
    alias = spec["alias"]
    if alias and "candidate" not in ns and callable(ns.get(alias)):
        ns["candidate"] = ns[alias]
    observations = Observations(len(spec["probes"]))
    ns[PROBE_FUNCTION] = observations.probe
    signal.signal(signal.SIGALRM, _on_alarm)
    deadline = started + spec["deadline"]
    untested, stalled = spec.get("untested_from", len(spec["probes"])), False  # stalled: one untested timed out
    skipped = 0
    sys.stdout = sys.stderr = _Sink()
    try:
        for index, test in enumerate(spec["tests"]):
            left = deadline - time.monotonic()
            if left <= 0:
                skipped += 1
                report.test(index, False, "", DEADLINE, WALL_TIME)
                continue
            budget = min(test["budget"], left)
            problem, error, limit = run_test(test, ns, budget, cap)
            report.test(index, problem is None, (problem or "")[: test["cap"]], error, limit)
        for index, source in enumerate(spec["probes"]):
            if observations.values[index] is None:
                left = 0.0 if stalled and index >= untested else deadline - time.monotonic()
                got = run_probe(source, ns, min(spec["probe_budget"], left)) if left > 0 else TIMEOUT_OBSERVATION
                observations.values[index], stalled = got, stalled or (index >= untested and got == TIMEOUT_OBSERVATION)
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    extra = {"observations": observations.values} if untested < len(spec["probes"]) else {}
    report.emit({"kind": "done", "behaviour": observations.digest(), "skipped": skipped, **extra})


def peak_rss_kb() -> int:
    """Peak resident KiB of this process image (``VmHWM``; ``ru_maxrss`` counts the pre-``exec`` one too)."""
    with contextlib.suppress(OSError, ValueError, IndexError, StopIteration), open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def usage_record(before: resource.struct_rusage) -> dict[str, object]:
    """CPU the candidate's execution used since ``before`` (user + system, this process and the
    children it waited for) and its peak resident memory, for the "usage" record."""
    now, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (now.ru_utime - before.ru_utime) + (now.ru_stime - before.ru_stime)
    cpu_s += children.ru_utime + children.ru_stime
    return {"kind": "usage", "cpu_ms": round(cpu_s * 1000, 3), "peak_rss_kb": peak_rss_kb()}


def _read(directory: str, name: str) -> str:
    with open(os.path.join(directory, name), "rb") as handle:
        return handle.read().decode("utf-8", "surrogatepass")


if __name__ == "__main__":
    _here = os.path.dirname(os.path.abspath(__file__))
    _input = json.loads(_read(_here, INPUT_FILE))
    _report = Reporter(_input["marker"], os.fdopen(os.dup(1), "w", encoding="utf-8"))
    main(STARTED, _input["spec"], _input["code"], _report)
    _report.emit(usage_record(_USAGE_AT_START))
    _report.flush()
    os._exit(0)
