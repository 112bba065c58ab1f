"""End-to-end: the real server, a real channel, real bubblewrap executions."""

from __future__ import annotations

import os
import socket
import textwrap

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from swarm.v1 import assessor_pb2, assessor_pb2_grpc, common_pb2
from swarm_assessor.config import AssessorConfig
from swarm_assessor.server import SERVICE_NAME, create_server
from swarmlib import SandboxConfig

FIB_TASK = '''def fib(n: int) -> int:
    """Return the n-th Fibonacci number.

    >>> fib(0)
    0
    >>> fib(1)
    1
    >>> fib(10)
    55
    >>> [fib(i) for i in range(5)]
    [0, 1, 1, 2, 3]
    """
'''

GOOD_FIB = textwrap.dedent(
    '''
    def fib(n: int) -> int:
        """Iterative, so large n does not recurse."""
        a, b = 0, 1
        for _ in range(n):
            a, b = b, a + b
        return a


    if __name__ == "__main__":
        print(fib(30))
        raise SystemExit("demo code must not run")
    '''
)

WRONG_FIB = textwrap.dedent(
    '''
    def fib(n: int) -> int:
        """Off by one."""
        return n + 1
    '''
)


WALL_TIME = common_pb2.SANDBOX_LIMIT_WALL_TIME
NO_LIMIT = common_pb2.SANDBOX_LIMIT_UNSPECIFIED


def _candidate(cid: str, code: str) -> common_pb2.CandidateCode:
    return common_pb2.CandidateCode(id=cid, text=f"```python\n{code}\n```", code=code)


async def _assess(
    stub: assessor_pb2_grpc.AssessorServiceStub, task: str, *codes: str, timeout: float = 0.0
) -> assessor_pb2.AssessResponse:
    request = assessor_pb2.AssessRequest(
        run_id="r1",
        task=task,
        candidates=[_candidate(f"c{i + 1}", code) for i, code in enumerate(codes)],
        timeout_seconds=timeout,
    )
    response: assessor_pb2.AssessResponse = await stub.Assess(request)
    return response


async def test_doctest_task_correct_and_wrong(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    response = await _assess(stub, FIB_TASK, GOOD_FIB, WRONG_FIB)
    assert response.sandbox == "bubblewrap"
    assert response.tests_found == 4
    good, wrong = response.assessments
    assert [good.candidate_id, wrong.candidate_id] == ["c1", "c2"]
    assert good.error == ""
    assert all(t.passed for t in good.tests), good.tests
    assert good.scores.tests_passed == good.scores.tests_total == 4
    assert good.scores.correctness == 1.0
    assert good.scores.completeness == 1.0
    assert good.scores.consensus == 0.0
    assert good.tests[2].name == "doctest 3: fib(10) == 55"
    assert wrong.scores.correctness < 1.0
    failed = [t for t in wrong.tests if not t.passed]
    assert failed
    assert "expected 55, got 11" in wrong.tests[2].output
    assert good.scores.overall > wrong.scores.overall
    assert good.duration_ms > 0
    # What the execution used, measured inside the sandbox (an interpreter takes a few MiB).
    assert good.cpu_ms > 0 and good.peak_rss_kb > 1024


async def test_assert_task(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    task = textwrap.dedent(
        """
        Write a function `is_even(n)` that tells whether n is even.

        ```python
        assert is_even(2)
        assert not is_even(3)
        assert is_even(10) == True
        ```
        """
    )
    good = "def is_even(n):\n    return n % 2 == 0\n"
    bad = "def is_even(n):\n    return n % 2 == 1\n"
    response = await _assess(stub, task, good, bad)
    assert response.tests_found == 3
    assert response.assessments[0].scores.tests_passed == 3
    assert response.assessments[1].scores.tests_passed == 0
    assert "AssertionError" in response.assessments[1].tests[0].output
    assert "left side was False" in response.assessments[1].tests[2].output


async def test_hanging_candidate_times_out_others_assessed(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    hangs = "import time\nwhile True:\n    time.sleep(0.05)\n"
    response = await _assess(stub, FIB_TASK, hangs, GOOD_FIB, timeout=1.5)
    hung, good = response.assessments
    assert "timed out after 1.5s" in hung.error
    assert hung.scores.correctness == 0.0
    assert all(not t.passed and "not run" in t.output for t in hung.tests)
    assert good.scores.correctness == 1.0
    assert good.error == ""
    assert hung.limit == WALL_TIME and all(t.limit == WALL_TIME for t in hung.tests)  # not run: why
    assert good.limit == NO_LIMIT and all(t.limit == NO_LIMIT for t in good.tests)
    assert (hung.cpu_ms, hung.peak_rss_kb) == (0.0, 0)  # killed before it could say


async def test_hanging_test_uses_per_test_budget(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    code = "def fib(n):\n    if n == 10:\n        while True:\n            pass\n    return [0, 1][n]\n"
    response = await _assess(stub, FIB_TASK, code, timeout=4.0)
    (only,) = response.assessments
    assert [t.passed for t in only.tests][:3] == [True, True, False]
    assert "timed out" in only.tests[2].output
    assert [t.limit for t in only.tests][:3] == [NO_LIMIT, NO_LIMIT, WALL_TIME]
    assert only.limit == NO_LIMIT  # one test's budget, not the execution's


async def test_syntax_error_and_empty_code(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    response = await _assess(stub, FIB_TASK, "def fib(n) return n\n", "")
    broken, empty = response.assessments
    assert broken.error.startswith("syntax error:")
    assert broken.scores.correctness == 0.0
    assert empty.error == "no code in reply"
    assert empty.scores.overall == 0.0
    assert empty.scores.completeness == 0.0
    assert broken.limit == empty.limit == NO_LIMIT
    assert all(t.limit == NO_LIMIT for t in [*broken.tests, *empty.tests])


async def test_no_tests_scores_clean_run(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    response = await _assess(stub, "Write a greeting program.", "print('hi')\n", "raise RuntimeError('boom')\n")
    assert response.tests_found == 0
    clean, crash = response.assessments
    assert clean.scores.correctness == 1.0
    assert crash.scores.correctness == 0.0
    assert "RuntimeError: boom" in crash.error
    assert crash.limit == NO_LIMIT


async def test_limits_show_on_the_test_that_hit_them_and_on_the_execution(
    stub: assessor_pb2_grpc.AssessorServiceStub,
) -> None:
    """The runner names a test's limit; the backend or the load error names the execution's."""
    in_a_test = "def fib(n):\n    if n == 10:\n        return len(bytearray(8 * 1024**3))\n    return [0, 1][n]\n"
    file_in_a_test = (
        "def fib(n):\n    if n == 10:\n        open('/tmp/f', 'wb').write(b'x' * (8 << 20))\n    return [0, 1][n]\n"
    )
    at_load = "hoard = bytearray(8 * 1024**3)\n"
    flood = "print('x' * (1 << 20))\n"
    response = await _assess(stub, FIB_TASK, in_a_test, file_in_a_test, at_load, flood)
    memory, big_file, loading, flooded = response.assessments
    assert [t.limit for t in memory.tests][:3] == [NO_LIMIT, NO_LIMIT, common_pb2.SANDBOX_LIMIT_MEMORY]
    assert memory.tests[2].output == "MemoryError" and memory.limit == NO_LIMIT
    assert big_file.tests[2].limit == common_pb2.SANDBOX_LIMIT_FILE_SIZE and "[Errno 27]" in big_file.tests[2].output
    assert loading.error == "error while loading: MemoryError"
    assert loading.limit == common_pb2.SANDBOX_LIMIT_MEMORY
    assert all(t.limit == common_pb2.SANDBOX_LIMIT_MEMORY for t in loading.tests)
    assert flooded.error == "stdout exceeded 65536 bytes" and flooded.limit == common_pb2.SANDBOX_LIMIT_OUTPUT
    assert all(t.limit == common_pb2.SANDBOX_LIMIT_OUTPUT for t in flooded.tests)


@pytest.mark.parametrize(
    ("ids", "fragment"),
    [([], "at least one candidate"), (["a", "a"], "appears more than once"), ([""], "id is empty")],
)
async def test_invalid_requests(stub: assessor_pb2_grpc.AssessorServiceStub, ids: list[str], fragment: str) -> None:
    request = assessor_pb2.AssessRequest(task=FIB_TASK, candidates=[_candidate(i, GOOD_FIB) for i in ids])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Assess(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in (info.value.details() or "")


async def test_too_many_candidates(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    request = assessor_pb2.AssessRequest(task="x", candidates=[_candidate(f"c{i}", "x = 1") for i in range(9)])
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Assess(request)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 8" in (info.value.details() or "")


async def test_network_is_blocked(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        task = "Connect.\n\n>>> reach()\n'blocked'\n"
        code = textwrap.dedent(
            f"""
            import socket

            def reach():
                try:
                    socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
                except OSError:
                    return "blocked"
                return "connected"
            """
        )
        response = await _assess(stub, task, code)
    finally:
        listener.close()
    assert response.assessments[0].tests[0].passed, response.assessments[0].tests[0].output


async def test_filesystem_is_read_only_outside_tmp(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    task = ">>> probe()\n['/tmp ok', '/usr denied', '/box denied', '/home denied']\n"
    code = textwrap.dedent(
        """
        def probe():
            out = []
            for path in ("/tmp/x", "/usr/x", "/box/x", "/home/x"):
                try:
                    with open(path, "w") as handle:
                        handle.write("x")
                    out.append(path.rsplit("/", 1)[0] + " ok")
                except OSError:
                    out.append(path.rsplit("/", 1)[0] + " denied")
            return out
        """
    )
    response = await _assess(stub, task, code)
    test = response.assessments[0].tests[0]
    assert test.passed, test.output


async def test_environment_is_clean(
    stub: assessor_pb2_grpc.AssessorServiceStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SWARM_TEST_SECRET", "hunter2")
    assert os.environ["SWARM_TEST_SECRET"] == "hunter2"
    task = ">>> sorted(os.environ)\n['HOME', 'LANG', 'PATH', 'PWD']\n"
    response = await _assess(stub, task, "import os\n")
    test = response.assessments[0].tests[0]
    assert test.passed, test.output


async def test_fork_bomb_is_bounded(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    task = ">>> spawn()\n'limited'\n"
    code = textwrap.dedent(
        """
        import os, time

        def spawn():
            for _ in range(500):
                try:
                    pid = os.fork()
                except OSError:
                    return "limited"
                if pid == 0:
                    time.sleep(5)
                    os._exit(0)
            return "unlimited"
        """
    )
    response = await _assess(stub, task, code)
    test = response.assessments[0].tests[0]
    assert test.passed, test.output
    assert test.limit == NO_LIMIT  # the candidate caught EAGAIN itself


async def test_health_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_missing_bwrap_is_failed_precondition() -> None:
    config = AssessorConfig(address="127.0.0.1:0", sandbox=SandboxConfig(bwrap_path="/nonexistent/bwrap"))
    server, port = await create_server(config)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as chan:
            stub = assessor_pb2_grpc.AssessorServiceStub(chan)
            request = assessor_pb2.AssessRequest(task="x", candidates=[_candidate("c1", "x = 1")])
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Assess(request)
            assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "bubblewrap not found at /nonexistent/bwrap" in (info.value.details() or "")
            health = health_pb2_grpc.HealthStub(chan)
            reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        await server.stop(0)


DEEP_SUM = "x = " + "+".join(["1"] * 3000)
DEEP_NOT = "not " * 10000
PARSES_BUT_DEEP = "x = " + "+".join(["1"] * 600)


async def test_too_deeply_nested_code_is_a_clean_syntax_error(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    response = await _assess(stub, FIB_TASK, DEEP_SUM, DEEP_NOT, GOOD_FIB)
    deep_sum, deep_not, good = response.assessments
    for deep in (deep_sum, deep_not):
        assert deep.error == "syntax error: code is nested too deeply to parse"
        assert deep.scores.tests_passed == 0
        assert deep.scores.completeness == 0.25
        assert all(t.output.startswith("not run: syntax error") for t in deep.tests)
    assert good.scores.tests_passed == 4


async def test_deeply_nested_task_and_code_get_an_answer(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    task = f"Write f().\n\n```python\nassert f() == 1\nassert {PARSES_BUT_DEEP[4:]} == 600\n```\n\n{DEEP_NOT}"
    response = await _assess(stub, task, "def f():\n    return 1\n", PARSES_BUT_DEEP)
    assert response.tests_found == 2
    ok, deep = response.assessments
    assert ok.error == ""
    assert ok.scores.tests_passed == 2
    assert deep.scores.completeness > 0.25  # it parses; it just defines nothing the task wants
