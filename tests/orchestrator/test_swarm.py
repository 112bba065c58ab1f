"""The whole swarm over real channels: four services, fake OpenAI-compatible instances over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager

import grpc
import pytest

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarm_bench.stack import Stages, instances_json, orchestrator
from swarm_orchestrator.prompts import SOLVE_SYSTEM
from swarm_orchestrator.tests_writer import TESTS_SYSTEM
from tests.fakes.openai_server import Behaviour, FakeLLMServer
from tests.fakes.replies import FIB_REPLY, REFINED_FIB_REPLY

FIB_TASK = """Write a Python function fib(n) that returns the n-th Fibonacci number.

>>> fib(0)
0
>>> fib(1)
1
>>> fib(10)
55
"""

WRONG_FIB_REPLY = """Here is a recursive version:

```python
def fib(n):
    if n <= 1:
        return 0
    return fib(n - 1) + fib(n - 2)
```
"""

BROKEN_REFINE_REPLY = """Improved version:

```python
def fib(n):
    return n * 2
```
"""


def solve_or_refine(solve: str, refine: str) -> Callable[[list[dict[str, object]]], str]:
    """Answer like a model that gets a solve prompt or a refinement prompt."""

    def reply(messages: list[dict[str, object]]) -> str:
        is_solve = any(m.get("role") == "system" and m.get("content") == SOLVE_SYSTEM for m in messages)
        return solve if is_solve else refine

    return reply


@asynccontextmanager
async def fakes(*configs: tuple[Behaviour, str | Callable[..., str]]) -> AsyncIterator[list[FakeLLMServer]]:
    async with AsyncExitStack() as stack:
        servers = []
        for behaviour, reply in configs:
            servers.append(await stack.enter_async_context(FakeLLMServer(behaviour=behaviour, reply=reply)))
        yield servers


def named(servers: Sequence[FakeLLMServer]) -> str:
    return instances_json([(f"fake-{i + 1}", s.base_url) for i, s in enumerate(servers)])


async def collect(
    stub: object, request: pb.RunSwarmRequest
) -> tuple[list[pb.RunSwarmResponse], grpc.aio.AioRpcError | None]:
    events: list[pb.RunSwarmResponse] = []
    try:
        async for event in stub.RunSwarm(request):  # type: ignore[attr-defined]
            events.append(event)
    except grpc.aio.AioRpcError as exc:
        return events, exc
    return events, None


async def test_three_instances_answer_ranked_with_consensus_and_stored(stages: Stages, database_url: str) -> None:
    good = solve_or_refine(FIB_REPLY, REFINED_FIB_REPLY)
    async with (
        fakes((Behaviour.ANSWER, good), (Behaviour.ANSWER, good), (Behaviour.ANSWER, WRONG_FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), database_url) as orch,
    ):
        events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=3))
        assert error is None
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds[0] == "accepted" and kinds[-1] == "done"
        assert kinds.count("instance_started") == 3 and kinds.count("instance_finished") == 3
        # Assessment comes first: its behaviour signatures decide the collator's clusters.
        assert kinds.index("assessed") < kinds.index("collated") < kinds.index("refined") < kinds.index("done")
        run = events[-1].done
        assert run.status == pb.RUN_STATUS_SUCCEEDED
        assert run.tests_found == 3
        assert "def fib" in run.final.code
        swarm = [c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM]
        assert len(swarm) == 3
        wrong = next(c for c in swarm if c.instance == "fake-3")
        right = [c for c in swarm if c.instance != "fake-3"]
        assert all(c.scores.tests_passed == 3 for c in right)
        assert wrong.scores.tests_passed < 3 and any(not t.passed and t.output for t in wrong.tests)
        assert max(c.rank for c in right) < wrong.rank
        # Each candidate keeps what its sandboxed execution used (stored with it, below).
        assert all(c.sandbox_cpu_ms > 0 and c.sandbox_peak_rss_kb > 0 for c in swarm)
        assert run.consensus.cluster_count >= 1 and run.consensus.share >= 2 / 3 - 1e-9
        # Two of three agree on an answer that passes every visible test: nothing to refine.
        assert run.refinement.reason.startswith("skipped: every visible test passes (3/3)")
        purposes = []
        for server in servers:
            for request in server.chat_requests:
                assert request.headers["x-swarm-run-id"] == run.id
                purposes.append(request.headers["x-swarm-purpose"])
        assert sorted(purposes) == ["solve", "solve", "solve", "tests"]
        stored = (await orch.stub.GetRun(pb.GetRunRequest(run_id=run.id))).run
        assert stored == run
        listing = await orch.stub.ListRuns(pb.ListRunsRequest(page_size=10))
        assert [r.id for r in listing.runs] == [run.id]


async def test_refinement_is_kept_only_when_not_worse(stages: Stages, sqlite_url: str) -> None:
    # One right answer is no consensus, so it is refined; the broken rewrite is not kept.
    worse = solve_or_refine(FIB_REPLY, BROKEN_REFINE_REPLY)
    async with (
        fakes((Behaviour.ANSWER, worse)) as servers,
        orchestrator(stages, named(servers), sqlite_url) as orch,
    ):
        events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1))
        assert error is None
        run = events[-1].done
        assert not run.refinement.kept and run.refinement.reason.startswith("dropped")
        assert run.final.origin == pb.CANDIDATE_ORIGIN_SWARM
        dropped = [c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_REFINED]
        assert len(dropped) == 1 and dropped[0].rank == 0

    better = solve_or_refine(WRONG_FIB_REPLY, REFINED_FIB_REPLY)
    async with (
        fakes((Behaviour.ANSWER, better), (Behaviour.ANSWER, better)) as servers,
        orchestrator(stages, named(servers), sqlite_url) as orch,
    ):
        events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2))
        assert error is None
        run = events[-1].done
        assert run.refinement.kept
        assert run.final.origin == pb.CANDIDATE_ORIGIN_REFINED and run.final.candidate_id == "r1"
        assert run.candidates[0].id == "r1" and run.candidates[0].rank == 1
        assert run.candidates[0].scores.tests_passed == 3
        # The refinement sits on the same [0, 1] scale as the candidates it is ranked with.
        assert all(0.0 <= c.scores.overall <= 1.0 for c in run.candidates)


async def test_failing_instances_fall_back_and_are_reported(stages: Stages, sqlite_url: str) -> None:
    async with (
        fakes(
            (Behaviour.ANSWER, FIB_REPLY),
            (Behaviour.HTTP_500, FIB_REPLY),
            (Behaviour.HANG, FIB_REPLY),
            (Behaviour.TRUNCATED, FIB_REPLY),
            (Behaviour.MALFORMED, FIB_REPLY),
        ) as servers,
        orchestrator(stages, named(servers), sqlite_url, SWARM_INSTANCE_TIMEOUT_S="4") as orch,
    ):
        events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=5, skip_refine=True))
        assert error is None
        run = events[-1].done
        assert run.status == pb.RUN_STATUS_SUCCEEDED
        kinds = {f.instance: f.kind for f in run.failures}
        assert kinds == {
            "fake-2": pb.FAILURE_KIND_HTTP_ERROR,
            "fake-3": pb.FAILURE_KIND_TIMEOUT,
            "fake-4": pb.FAILURE_KIND_MALFORMED,
            "fake-5": pb.FAILURE_KIND_MALFORMED,
        }
        assert all(f.will_retry for f in run.failures)
        # Every failed slot was retried on the one healthy instance and produced a candidate.
        assert len(run.candidates) == 5 and {c.instance for c in run.candidates} == {"fake-1"}
        assert "HTTP 500" in next(f.reason for f in run.failures if f.instance == "fake-2")
        failed_events = [e.instance_failed for e in events if e.HasField("instance_failed")]
        assert len(failed_events) == 4


async def test_rate_limited_instance_is_retried_with_backoff(stages: Stages, sqlite_url: str) -> None:
    async with fakes((Behaviour.ANSWER, FIB_REPLY)) as servers:
        servers[0].enqueue(Behaviour.HTTP_429)
        async with orchestrator(stages, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch:
            events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True))
        assert error is None
        assert not events[-1].done.failures
        assert len(servers[0].chat_requests) == 2


async def test_quorum_not_reached_fails_with_reasons_and_is_stored(stages: Stages, database_url: str) -> None:
    async with (
        fakes((Behaviour.HTTP_500, FIB_REPLY), (Behaviour.EMPTY, FIB_REPLY), (Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(
            stages, named(servers[:2]), database_url, SWARM_LLM_RETRY_ATTEMPTS="1", SWARM_QUORUM_FRACTION="1.0"
        ) as orch,
    ):
        events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2))
        assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE
        assert "quorum not reached" in (error.details() or "")
        run = events[-1].done
        assert run.status == pb.RUN_STATUS_FAILED and "quorum not reached" in run.error
        assert {f.kind for f in run.failures} >= {pb.FAILURE_KIND_HTTP_ERROR, pb.FAILURE_KIND_EMPTY}
        stored = (await orch.stub.GetRun(pb.GetRunRequest(run_id=run.id))).run
        assert stored.status == pb.RUN_STATUS_FAILED and len(stored.failures) == len(run.failures)


async def test_a_failed_run_keeps_the_answers_that_arrived(stages: Stages, database_url: str) -> None:
    async with fakes((Behaviour.ANSWER, FIB_REPLY), (Behaviour.HTTP_500, FIB_REPLY)) as servers:
        servers[0].enqueue(Behaviour.ANSWER, Behaviour.HTTP_500)  # answers slot 1, then fails the fallback
        async with orchestrator(
            stages,
            named(servers),
            database_url,
            SWARM_LLM_RETRY_ATTEMPTS="1",
            SWARM_QUORUM_FRACTION="1.0",
            SWARM_TEST_WRITERS="0",
        ) as orch:
            events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2))
            assert error is not None and error.code() == grpc.StatusCode.UNAVAILABLE
            stored = (await orch.stub.GetRun(pb.GetRunRequest(run_id=events[0].run_id))).run
    assert stored.status == pb.RUN_STATUS_FAILED and "1 of 2 responses arrived" in stored.error
    assert [c.instance for c in stored.candidates] == ["fake-1"] and stored.candidates[0].code
    assert [(f.instance, f.attempt) for f in stored.failures] == [("fake-2", 1), ("fake-1", 2)]


async def test_refinement_only_uses_instances_the_run_allows(stages: Stages, sqlite_url: str) -> None:
    good = solve_or_refine(WRONG_FIB_REPLY, REFINED_FIB_REPLY)
    async with (
        fakes((Behaviour.ANSWER, good), (Behaviour.ANSWER, good)) as servers,
        orchestrator(stages, named(servers), sqlite_url) as orch,
    ):
        _, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, instances=["fake-2"]))
        assert error is None
        assert servers[0].chat_requests == []
        assert {r.headers["x-swarm-purpose"] for r in servers[1].chat_requests} == {"solve", "tests", "refine"}


async def test_repeatedly_failing_instance_is_marked_unhealthy_and_skipped(stages: Stages, sqlite_url: str) -> None:
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY), (Behaviour.HTTP_500, FIB_REPLY)) as servers,
        orchestrator(
            stages, named(servers), sqlite_url, SWARM_UNHEALTHY_AFTER="2", SWARM_LLM_RETRY_ATTEMPTS="1"
        ) as orch,
    ):
        for _ in range(2):
            _, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, skip_refine=True))
            assert error is None
        statuses = {s.instance.name: s for s in (await orch.stub.ListInstances(pb.ListInstancesRequest())).instances}
        assert statuses["fake-1"].healthy
        assert not statuses["fake-2"].healthy and "HTTP 500" in statuses["fake-2"].last_error
        before = len(servers[1].chat_requests)
        events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, skip_refine=True))
        assert error is None and not events[-1].done.failures
        assert len(servers[1].chat_requests) == before


@pytest.mark.parametrize(
    ("request_kwargs", "message"),
    [
        ({"task": "   "}, "task is empty"),
        ({"task": "x" * 20_001}, "the limit is 20000"),
        ({"task": "Write fib", "swarm_size": 17}, "use 1..16"),
        ({"task": "Write fib", "swarm_size": -1}, "use 1..16"),
        ({"task": "Write fib", "instances": ["nope"]}, "unknown instance(s) ['nope']"),
        ({"task": "Write fib", "instance_timeout_seconds": -1}, "instance_timeout_seconds is -1.0; use 0..3600"),
        ({"task": "Write fib", "instance_timeout_seconds": float("nan")}, "instance_timeout_seconds is nan"),
        ({"task": "Write fib", "instance_timeout_seconds": 1e9}, "use 0..3600"),
    ],
)
async def test_bad_input_is_rejected_before_anything_is_stored(
    stages: Stages, database_url: str, request_kwargs: dict[str, object], message: str
) -> None:
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), database_url) as orch,
    ):
        events, error = await collect(orch.stub, pb.RunSwarmRequest(**request_kwargs))  # type: ignore[arg-type]
        assert events == []
        assert error is not None and error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert message in (error.details() or "")
        assert not (await orch.stub.ListRuns(pb.ListRunsRequest())).runs
        assert servers[0].chat_requests == []


async def test_runs_are_listed_newest_first_in_pages(stages: Stages, database_url: str) -> None:
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), database_url) as orch,
    ):
        ids = []
        for _ in range(3):
            events, _ = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True))
            ids.append(events[-1].done.id)
        first = await orch.stub.ListRuns(pb.ListRunsRequest(page_size=2))
        assert [r.id for r in first.runs] == ids[::-1][:2] and first.next_page_token
        second = await orch.stub.ListRuns(pb.ListRunsRequest(page_size=2, page_token=first.next_page_token))
        assert [r.id for r in second.runs] == [ids[0]] and not second.next_page_token
        with pytest.raises(grpc.aio.AioRpcError) as bad_token:
            await orch.stub.ListRuns(pb.ListRunsRequest(page_token="garbage"))
        assert bad_token.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await orch.stub.GetRun(pb.GetRunRequest(run_id="does-not-exist"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_client_disconnect_does_not_lose_the_run(stages: Stages, sqlite_url: str) -> None:
    async with fakes((Behaviour.SLOW, FIB_REPLY)) as servers:
        servers[0].chunk_delay = 0.01
        async with orchestrator(stages, named(servers), sqlite_url) as orch:
            call = orch.stub.RunSwarm(pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True))
            accepted = await call.read()
            call.cancel()
            run_id = accepted.run_id
            for _ in range(200):
                run = (await orch.stub.GetRun(pb.GetRunRequest(run_id=run_id))).run
                if run.status != pb.RUN_STATUS_RUNNING:
                    break
                await asyncio.sleep(0.05)
            assert run.status == pb.RUN_STATUS_SUCCEEDED and run.final.code


GENERATED_TESTS_REPLY = """```python
assert fib(2) == 1
assert fib(5) == 5
assert fib(7) == 13
assert _____ == fib(3)
```"""

PROSE_FIB_TASK = "Write a Python function fib(n) that returns the n-th Fibonacci number."


def by_purpose(solve: str) -> Callable[[list[dict[str, object]]], str]:
    """A model that writes tests when asked for tests and solves otherwise."""

    def reply(messages: list[dict[str, object]]) -> str:
        is_tests = any(m.get("role") == "system" and m.get("content") == TESTS_SYSTEM for m in messages)
        return GENERATED_TESTS_REPLY if is_tests else solve

    return reply


async def test_generated_tests_and_behaviour_decide_the_selection(stages: Stages, sqlite_url: str) -> None:
    """No visible tests: the swarm's own tests and identical behaviour pick the right program."""
    async with (
        fakes(
            (Behaviour.ANSWER, by_purpose(WRONG_FIB_REPLY)),
            (Behaviour.ANSWER, by_purpose(FIB_REPLY)),
            (Behaviour.ANSWER, by_purpose(REFINED_FIB_REPLY)),
        ) as servers,
        orchestrator(stages, named(servers), sqlite_url) as orch,
    ):
        events, error = await collect(
            orch.stub, pb.RunSwarmRequest(task=PROSE_FIB_TASK, swarm_size=3, skip_refine=True)
        )
    assert error is None
    run = events[-1].done
    assert run.tests_found == 0 and run.generated_tests == 3  # the placeholder assert is cleaned away
    by_instance = {c.instance: c for c in run.candidates}
    right, also_right, wrong = by_instance["fake-2"], by_instance["fake-3"], by_instance["fake-1"]
    assert right.behaviour and right.behaviour == also_right.behaviour != wrong.behaviour
    assert right.scores.generated_passed == 3 and wrong.scores.generated_passed < 3
    assert right.scores.dual_agreement == 1.0 and wrong.scores.dual_agreement < 0.5
    assert right.scores.behaviour_cluster_size == 2
    assert run.final.candidate_id in {right.id, also_right.id}
    assert run.consensus.basis == "behaviour" and run.consensus.reached and run.consensus.confidence > 0
    assert all(t.origin == common_pb2.TEST_ORIGIN_GENERATED for t in right.tests)


async def test_attached_tests_count_as_visible(stages: Stages, sqlite_url: str) -> None:
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY), (Behaviour.ANSWER, WRONG_FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        request = pb.RunSwarmRequest(
            task=PROSE_FIB_TASK, swarm_size=2, skip_refine=True, tests=["assert fib(10) == 55", "assert fib(1) == 1"]
        )
        events, error = await collect(orch.stub, request)
        assert error is None
        run = events[-1].done
        assert run.tests_found == 2
        assert run.candidates[0].instance == "fake-1" and run.candidates[0].scores.tests_passed == 2
        _, bad = await collect(orch.stub, pb.RunSwarmRequest(task=PROSE_FIB_TASK, tests=["  "]))
        assert bad is not None and bad.code() == grpc.StatusCode.INVALID_ARGUMENT
