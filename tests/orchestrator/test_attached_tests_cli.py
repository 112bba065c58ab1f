"""``swarm run --test`` / ``--tests-file`` over the real stack: the user's tests reach the run, are
run against every answer as visible tests and are stored with it; tests that cannot judge anything
are refused with INVALID_ARGUMENT naming the test."""

from __future__ import annotations

import json
from pathlib import Path

import grpc

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarm_bench.stack import Stages, orchestrator
from tests.fakes.openai_server import Behaviour
from tests.fakes.replies import FIB_REPLY
from tests.orchestrator.test_quality_cli import swarm
from tests.orchestrator.test_swarm import PROSE_FIB_TASK, WRONG_FIB_REPLY, collect, fakes, named

TESTS_FILE = """\
# the user's own tests
assert fib(2) == 1

assert [fib(n) for n in range(6)] == [
    0, 1, 1, 2, 3, 5,
]
"""


async def test_swarm_run_attaches_the_users_tests(stages: Stages, sqlite_url: str, tmp_path: Path) -> None:
    tests_file = tmp_path / "fib_tests.py"
    tests_file.write_text(TESTS_FILE)
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY), (Behaviour.ANSWER, WRONG_FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        code, out, err = await swarm(
            orch.target,
            "run",
            "--json",
            PROSE_FIB_TASK,
            "--size",
            "2",
            "--no-refine",
            "--test",
            "assert fib(10) == 55",
            "--tests-file",
            str(tests_file),
            key=orch.api_key,
        )
        assert code == 0, err
        shown = json.loads(out)
        stored = (await orch.stub.GetRun(pb.GetRunRequest(run_id=shown["id"]))).run

    # The task holds no test of its own: all three come from the command line, in order.
    assert stored.tests_found == 3
    by_instance = {c.instance: c for c in stored.candidates}
    right, wrong = by_instance["fake-1"], by_instance["fake-2"]
    names = [t.name for t in right.tests]
    assert names[0] == "attached 1: fib(10) == 55" and names[1] == "attached 2: fib(2) == 1"
    assert names[2].startswith("attached 3: [fib(n) for n in range(6)] == [0, 1, 1, 2, 3, 5]")
    assert all(t.origin == common_pb2.TEST_ORIGIN_VISIBLE for t in right.tests)
    assert right.scores.tests_passed == 3 and right.scores.tests_total == 3
    assert wrong.scores.tests_passed < 3  # the wrong fib is caught by the user's tests
    assert stored.final.candidate_id == right.id
    assert shown["final"]["candidate_id"] == right.id


async def test_tests_that_cannot_judge_are_refused_naming_the_test(stages: Stages, sqlite_url: str) -> None:
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        for tests, expected in (
            (["assert fib(1) == 1", "assert fib(2) = 1"], "tests[1] is not valid Python: invalid syntax (line 1)"),
            (["fib(3) == 2"], "tests[0] holds no assert statement"),
            (["return 1\nassert fib(1) == 1"], "tests[0] is not valid Python: 'return' outside function"),
        ):
            events, error = await collect(orch.stub, pb.RunSwarmRequest(task=PROSE_FIB_TASK, tests=tests))
            assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT, events
            assert expected in (error.details() or "")
            assert not events  # refused before anything was stored or run
        assert servers[0].chat_requests == []  # no model was asked
        listed = await orch.stub.ListRuns(pb.ListRunsRequest())
        assert not listed.runs
