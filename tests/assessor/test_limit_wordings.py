"""Every wording the sandbox, the runner and the assessor produce about a limit, paired with the typed limit.

Before ``SandboxLimit``, ``no_sandbox_violation`` found limits with a regex over an assessment's
error and its failing tests' outputs (``_REGEX`` below, verbatim from gates.py). Now only the
limit set where the limit is recognised counts. This file lists what each producer says when a
limit (or no limit) stops a program, and checks that the gate reads the same labels from the
enum as the regex read from the words. The only differences are deliberate (``DELIBERATE``):
words that merely mention a limit, in a backend's hint or in the candidate's or the task's own text.
"""

from __future__ import annotations

import re
import signal
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from swarm.v1 import assessor_pb2, assessor_pb2_grpc, common_pb2
from swarm_assessor import runner
from swarm_assessor.config import AssessorConfig
from swarm_assessor.gates import LIMIT_LABELS, sandbox_violations
from swarm_assessor.limits import to_proto
from swarm_assessor.server import create_server
from swarmlib import SandboxConfig, SandboxLimit
from swarmlib._runloop_result import Trailer, hung as runloop_hung, result as runloop_result
from swarmlib._sandbox_local import _reason as local_reason
from swarmlib._sandbox_runloop import _DevboxDied

_REGEX: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"timed out after|time budget of [\d.]+s ran out|time budget ran out"), "time limit"),
    (re.compile(r"MemoryError|memory limit"), "memory limit"),
    (
        re.compile(r"\[Errno 11\] Resource temporarily unavailable|can't start new thread|process limit"),
        "process limit",
    ),
    (re.compile(r"\[Errno 27\]|file size limit|EFBIG"), "file size limit"),
    (re.compile(r"\[Errno 28\]|/tmp is full"), "/tmp size limit"),
    (re.compile(r"(stdout|stderr) exceeded \d+ bytes"), "output cap"),
    (re.compile(r"killed by SIG"), "killed by a signal"),
)


def _regex_label(text: str) -> str:
    return next((label for pattern, label in _REGEX if text and pattern.search(text)), "")


def _regex_violations(candidate: assessor_pb2.GateCandidate) -> list[str]:
    """What the gate found before the enum: the regex over the error and the failing tests' outputs."""
    places = [("its execution", candidate.error)] + [(t.name, t.output) for t in candidate.tests if not t.passed]
    return [f"{_regex_label(text)} in {place}" for place, text in places if _regex_label(text)]


def _label(limit: SandboxLimit) -> str:
    return LIMIT_LABELS.get(to_proto(limit), "")


def _service_error(reason: str, stderr: str, code: int | None) -> str:
    """The assessment error the service makes of an execution that stopped before its report was done."""
    tail = stderr.strip().splitlines()[-1:] or [f"exit code {code}"]
    return reason or f"program stopped before reporting: {tail[0][:300]}"


CFG = SandboxConfig()
# (exit code, timed out, overflow, last stderr line): the ways a local execution ends.
LOCAL_ENDS = [
    (-9, True, [], ""),
    (-9, False, ["stdout"], ""),
    (-9, False, ["stderr"], ""),
    (-signal.SIGXCPU, False, [], ""),
    (128 + signal.SIGXCPU, False, [], ""),
    (-signal.SIGKILL, False, [], ""),
    (128 + signal.SIGKILL, False, [], ""),
    (-signal.SIGSEGV, False, [], ""),
    (-signal.SIGTERM, False, [], ""),
    (200, False, [], ""),  # no signal of that number: an exit status
    (1, False, [], "MemoryError"),
    (1, False, [], "OSError: [Errno 27] File too large"),
    (1, False, [], "OSError: [Errno 28] No space left on device"),
    (1, False, [], "BlockingIOError: [Errno 11] Resource temporarily unavailable"),
    (1, False, [], "RuntimeError: can't start new thread"),
    (1, False, [], "ValueError: an ordinary error"),
    (3, False, [], ""),
]


@pytest.mark.parametrize(("code", "timed_out", "overflow", "stderr"), LOCAL_ENDS)
def test_the_local_backend_classifies_every_end_as_its_wording_did(
    code: int, timed_out: bool, overflow: list[str], stderr: str
) -> None:
    reason, limit = local_reason(code, timed_out, 2.0, overflow, stderr, CFG)
    assert _label(limit) == _regex_label(_service_error(reason, stderr, code)), (reason, limit)


# (exit code, duration ms, stdout bytes, last stderr line): the ways a Runloop execution ends.
RUNLOOP_ENDS = [
    (137, 2000.0, 0, ""),  # timeout(1) killed it at the deadline
    (128 + signal.SIGSEGV, 10.0, 0, ""),
    (128 + signal.SIGTERM, 10.0, 0, ""),
    (200, 10.0, 0, ""),
    (0, 10.0, 99999, ""),
    (1, 10.0, 0, "MemoryError"),
    (1, 10.0, 0, "OSError: [Errno 27] File too large"),
    (1, 10.0, 0, "OSError: [Errno 28] No space left on device"),  # no reason here: not a limit Runloop sets
    (1, 10.0, 0, "BlockingIOError: [Errno 11] Resource temporarily unavailable"),
    (1, 10.0, 0, "RuntimeError: can't start new thread"),
    (1, 10.0, 0, "ValueError: an ordinary error"),
]


@pytest.mark.parametrize(("code", "ms", "out", "stderr"), RUNLOOP_ENDS)
def test_the_runloop_backend_classifies_every_end_as_its_wording_did(
    code: int, ms: float, out: int, stderr: str
) -> None:
    result = runloop_result(Trailer(code, ms, out, len(stderr)), "", stderr, 2.0, 65536, 512)
    assert _label(result.limit) == _regex_label(_service_error(result.reason, stderr, code)), result


def test_the_runloop_backend_without_an_end_from_the_devbox() -> None:
    hung = runloop_hung(2.0)
    assert _label(hung.limit) == _regex_label(hung.reason) == "time limit"
    # A devbox that dies mid-execution is no limit of the program's: no label either way (the
    # contract test in tests/libs/test_runloop_sandbox.py sees its limit is NONE).
    assert _regex_label(str(_DevboxDied("dbx_1", "failure", "out_of_memory"))) == ""


# Where the typed limit and the old regex part, on purpose: (what is said, what the regex read, the
# limit now, why).
DELIBERATE: list[tuple[str, str, SandboxLimit, str]] = [
    (
        "killed by SIGKILL (a CPU-time or memory limit was hit)",
        "memory limit",
        SandboxLimit.KILLED,
        "Runloop's hint for SIGKILL mentions memory; the signal does not say which limit sent it",
    ),
    (
        "killed by SIGXCPU (a CPU-time or memory limit was hit)",
        "memory limit",
        SandboxLimit.CPU_TIME,
        "the same hint on SIGXCPU, which is the CPU-time limit (labelled as every killing signal)",
    ),
    (
        "error while loading: ValueError: MemoryError timed out after 3s",
        "time limit",
        SandboxLimit.NONE,
        "the candidate's own message; an ordinary exception stopped it",
    ),
    (
        "program stopped before reporting: MemoryError",
        "memory limit",
        SandboxLimit.NONE,
        "the program ended itself with status 0 (os._exit) after writing the word: a clean exit is no limit",
    ),
    (
        "expected MemoryError, nothing was raised",
        "memory limit",
        SandboxLimit.NONE,
        "the task's doctest expects a MemoryError that never came: no limit was hit",
    ),
]


@pytest.mark.parametrize(("text", "read", "limit", "why"), DELIBERATE)
def test_deliberate_differences_from_the_regex(text: str, read: str, limit: SandboxLimit, why: str) -> None:
    assert _regex_label(text) == read, why
    assert _label(limit) != read, why


def test_the_deliberate_differences_are_what_the_producers_set() -> None:
    for code in (128 + signal.SIGKILL, 128 + signal.SIGXCPU):
        result = runloop_result(Trailer(code, 10.0, 0, 0), "", "", 2.0, 65536, 512)
        assert (result.reason, result.limit) == next((t, lim) for t, _, lim, _ in DELIBERATE if t == result.reason)
    spec: runner.TestSpec = {
        "kind": "doctest",
        "source": "f()",
        "want": "",
        "exc_msg": "MemoryError\n",
        "left": "",
        "budget": 1.0,
        "cap": 500,
    }
    problem, limit = runner.check_doctest(spec, {"f": lambda: None}, 500)
    assert (problem, SandboxLimit(limit)) == ("expected MemoryError, nothing was raised", SandboxLimit.NONE)
    # The backends read the last stderr line of a failed program only.
    for code, expected in ((0, SandboxLimit.NONE), (1, SandboxLimit.MEMORY)):
        assert local_reason(code, False, 2.0, [], "MemoryError", CFG)[1] is expected
        assert runloop_result(Trailer(code, 10.0, 0, 11), "", "MemoryError", 2.0, 65536, 512).limit is expected


TASK = '''def fib(n: int) -> int:
    """Return the n-th Fibonacci number; negative n is an error.

    >>> fib(0)
    0
    >>> fib(1)
    1
    >>> fib(10)
    55
    >>> fib(-1)
    Traceback (most recent call last):
    ValueError: negative
    """
'''
GOOD = """def fib(n):
    if n < 0:
        raise ValueError('negative')
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
"""


def _at_ten(*statements: str) -> str:
    """A right ``fib`` that does ``statements`` when asked for fib(10)."""
    body = "".join(f"        {line}\n" for line in statements)
    return GOOD.replace("    a, b = 0, 1\n", f"    if n == 10:\n{body}    a, b = 0, 1\n", 1)


# Each candidate provokes one way a limit (or no limit) shows in an assessment.
CANDIDATES = {
    "good": GOOD,
    "wrong": "def fib(n):\n    return n + 1\n",
    "raises": _at_ten("raise KeyError('plain')"),
    "memory_in_a_test": _at_ten("bytearray(8 * 1024**3)"),
    "memory_instead_of_the_expected": GOOD.replace("raise ValueError('negative')", "bytearray(8 * 1024**3)"),
    "file_size_in_a_test": _at_ten("open('/tmp/f', 'wb').write(b'x' * (8 << 20))"),
    "tmp_full_in_a_test": _at_ten("for i in range(100):", "    open(f'/tmp/p{i}', 'wb').write(b'x' * (1000 << 10))"),
    "processes_in_a_test": _at_ten(
        "import os, time", "while True:", "    if os.fork() == 0:", "        time.sleep(60)", "        os._exit(0)"
    ),
    "threads_in_a_test": _at_ten(
        "import threading, time",
        "while True:",
        "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()",
    ),
    "test_timeout": _at_ten("while True:", "    pass"),
    "slow": GOOD.replace("    a, b = 0, 1\n", "    __import__('time').sleep(0.3)\n    a, b = 0, 1\n"),
    "hangs_at_load": "while True:\n    pass\n",
    "memory_at_load": "hoard = bytearray(8 * 1024**3)\n",
    "floods_at_load": "print('x' * (1 << 20))\n",
    "killed_at_load": "import os\nos.kill(os.getpid(), 9)\n",
    "cpu_at_load": (
        "import resource\nused = resource.getrusage(resource.RUSAGE_SELF)\n"
        "hard = resource.getrlimit(resource.RLIMIT_CPU)[1]\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (int(used.ru_utime + used.ru_stime) + 1, hard))\n"
        "while True:\n    pass\n"
    ),
    "crashes_at_load": "import ctypes\nctypes.string_at(0)\n",
    "exits_in_a_test": _at_ten("import os", "os._exit(3)"),
    "load_error": "raise RuntimeError('no')\n",
    "says_memory_at_load": "raise ValueError('MemoryError timed out after 3s')\n",
    "syntax_error": "def fib(:\n",
    "empty": "",
}
GENERATED = [f"assert fib({n}) >= 0" for n in range(2, 9)]
# Candidates whose assessment the regex read differently, on purpose (``DELIBERATE``).
WORDED = {"says_memory_at_load"}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stub() -> AsyncIterator[assessor_pb2_grpc.AssessorServiceStub]:
    config = AssessorConfig(address="127.0.0.1:0", timeout_s=3.0, max_candidates=32, mutated_probes=0)
    server, port = await create_server(config)
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield assessor_pb2_grpc.AssessorServiceStub(channel)
    await server.stop(0)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def assessed(stub: assessor_pb2_grpc.AssessorServiceStub) -> dict[str, assessor_pb2.Assessment]:
    request = assessor_pb2.AssessRequest(
        run_id="wordings",
        task=TASK,
        candidates=[common_pb2.CandidateCode(id=name, code=code) for name, code in CANDIDATES.items()],
        generated_tests=GENERATED,
    )
    response: assessor_pb2.AssessResponse = await stub.Assess(request)
    return {a.candidate_id: a for a in response.assessments}


def _subject(assessment: assessor_pb2.Assessment) -> assessor_pb2.GateCandidate:
    return assessor_pb2.GateCandidate(
        candidate_id=assessment.candidate_id, tests=assessment.tests, error=assessment.error, limit=assessment.limit
    )


@pytest.mark.parametrize("name", sorted(CANDIDATES))
async def test_the_gate_reads_from_the_enum_what_it_read_from_the_words(
    assessed: dict[str, assessor_pb2.Assessment], name: str
) -> None:
    subject = _subject(assessed[name])
    if name in WORDED:
        assert _regex_violations(subject) and not sandbox_violations(subject)
    else:
        assert sandbox_violations(subject) == _regex_violations(subject), subject


async def test_each_candidate_shows_the_limit_it_provoked(assessed: dict[str, assessor_pb2.Assessment]) -> None:
    """The run above covers every wording: this is the evidence that it does."""

    def execution(name: str) -> str:
        return common_pb2.SandboxLimit.Name(assessed[name].limit)

    def in_fib_10(name: str) -> str:
        return common_pb2.SandboxLimit.Name(assessed[name].tests[2].limit)

    assert in_fib_10("memory_in_a_test") == "SANDBOX_LIMIT_MEMORY"
    assert common_pb2.SandboxLimit.Name(assessed["memory_instead_of_the_expected"].tests[3].limit) == (
        "SANDBOX_LIMIT_MEMORY"
    )
    assert in_fib_10("file_size_in_a_test") == "SANDBOX_LIMIT_FILE_SIZE"
    assert in_fib_10("tmp_full_in_a_test") == "SANDBOX_LIMIT_TMP_SPACE"
    assert in_fib_10("processes_in_a_test") == in_fib_10("threads_in_a_test") == "SANDBOX_LIMIT_PROCESSES"
    assert in_fib_10("test_timeout") == "SANDBOX_LIMIT_WALL_TIME"
    assert "time budget of 3s ran out" in assessed["slow"].error and execution("slow") == "SANDBOX_LIMIT_WALL_TIME"
    assert execution("hangs_at_load") == "SANDBOX_LIMIT_WALL_TIME"
    assert execution("memory_at_load") == "SANDBOX_LIMIT_MEMORY"
    assert execution("floods_at_load") == "SANDBOX_LIMIT_OUTPUT"
    assert execution("killed_at_load") == execution("crashes_at_load") == "SANDBOX_LIMIT_KILLED"
    assert execution("cpu_at_load") == "SANDBOX_LIMIT_CPU_TIME"
    assert assessed["exits_in_a_test"].error.startswith("program stopped before reporting")
    for name in ("good", "wrong", "raises", "exits_in_a_test", "load_error", "syntax_error", "empty"):
        subject = _subject(assessed[name])
        assert not sandbox_violations(subject), name
