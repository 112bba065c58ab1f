"""Quality gates, approvals, feedback and reports through the real services over real channels.

Each test runs its own assessor with the gate rules it needs (SWARM_GATES), beside the session's
collator and refiner, and an orchestrator over fake OpenAI-compatible instances.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc
import pytest

from swarm.v1 import assessor_pb2, assessor_pb2_grpc, common_pb2, orchestrator_pb2 as pb
from swarm_assessor.config import AssessorConfig
from swarm_assessor.server import create_server as create_assessor
from swarm_bench.stack import Stages, orchestrator
from tests.fakes.openai_server import Behaviour
from tests.fakes.replies import FIB_REPLY
from tests.orchestrator.keys import as_key, keyless
from tests.orchestrator.test_swarm import FIB_TASK, WRONG_FIB_REPLY, collect, fakes, named

GATES = json.dumps(
    [
        {"rule": "visible_tests_pass", "on_fail": "FAIL"},
        {"rule": "consensus_reached", "on_fail": "NEEDS_APPROVAL"},
    ]
)


@asynccontextmanager
async def gated(stages: Stages, gates: str = GATES) -> AsyncIterator[Stages]:
    """The session's collator and refiner with an assessor of our own that applies ``gates``."""
    config = AssessorConfig.from_env(
        {"SWARM_ASSESSOR_ADDR": "127.0.0.1:0", "SWARM_METRICS_ADDR": "127.0.0.1:0", "SWARM_GATES": gates}
    )
    server, port = await create_assessor(config)
    await server.start()
    try:
        yield Stages(stages.collator, f"127.0.0.1:{port}", stages.refiner)
    finally:
        await server.stop(0.5)


async def finished(stub: object, request: pb.RunSwarmRequest) -> tuple[pb.Run, list[pb.RunSwarmResponse]]:
    events, error = await collect(stub, request)
    assert error is None, error
    return events[-1].done, events


async def test_each_gate_outcome_decides_the_runs_status(stages: Stages, sqlite_url: str) -> None:
    async with (
        gated(stages) as wired,
        fakes((Behaviour.ANSWER, FIB_REPLY), (Behaviour.ANSWER, FIB_REPLY)) as good,
        fakes((Behaviour.ANSWER, WRONG_FIB_REPLY)) as wrong,
        orchestrator(wired, named([*good, *wrong]), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        # PASS: two agreeing answers that pass every visible test.
        run, events = await finished(
            orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, instances=["fake-1", "fake-2"], skip_refine=True)
        )
        assert run.status == pb.RUN_STATUS_SUCCEEDED and not run.error
        assert run.gate.outcome == common_pb2.GATE_OUTCOME_PASS
        assert [r.name for r in run.gate.rules] == ["visible_tests_pass", "consensus_reached"]
        gated_events = [e.gated for e in events if e.HasField("gated")]
        assert len(gated_events) == 1 and gated_events[0] == run.gate
        kinds = [e.WhichOneof("event") for e in events]
        assert kinds.index("gated") == len(kinds) - 2  # decided last, just before done
        assert not run.audit

        # NEEDS_APPROVAL: one right answer cannot be a consensus.
        run, _ = await finished(
            orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, instances=["fake-1"], skip_refine=True)
        )
        assert run.status == pb.RUN_STATUS_NEEDS_APPROVAL and not run.error
        assert run.gate.outcome == common_pb2.GATE_OUTCOME_NEEDS_APPROVAL
        assert list(run.gate.deciding_rules) == ["consensus_reached"]
        assert [(a.actor, a.action) for a in run.audit] == [("swarm-gates", pb.AUDIT_ACTION_HELD)]
        assert "consensus_reached" in run.audit[0].comment
        assert run.final.code  # the answer is kept for the approver to read

        # FAIL: the answer fails a visible test; the run fails, the answer stays on record.
        run, _ = await finished(
            orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, instances=["fake-3"], skip_refine=True)
        )
        assert run.status == pb.RUN_STATUS_FAILED
        assert run.gate.outcome == common_pb2.GATE_OUTCOME_FAIL
        assert list(run.gate.deciding_rules) == ["visible_tests_pass"]
        assert run.error.startswith("the quality gates failed the answer: fail: visible_tests_pass (")
        assert run.final.code and run.candidates[0].scores.tests_passed < 3
        stored = (await orch.stub.GetRun(pb.GetRunRequest(run_id=run.id))).run
        assert stored == run


class AssessorWithoutGates(assessor_pb2_grpc.AssessorServiceServicer):
    """An assessor from before the gates: Assess works (through the real one), EvaluateGates is UNIMPLEMENTED."""

    def __init__(self, real: assessor_pb2_grpc.AssessorServiceStub) -> None:
        self._real = real

    async def Assess(
        self, request: assessor_pb2.AssessRequest, context: grpc.aio.ServicerContext
    ) -> assessor_pb2.AssessResponse:
        response: assessor_pb2.AssessResponse = await self._real.Assess(request)
        return response


async def test_gates_that_cannot_be_evaluated_hold_the_run(stages: Stages, sqlite_url: str) -> None:
    """An assessor that cannot judge the answer (here: one that predates the gates) never lets it pass."""
    async with grpc.aio.insecure_channel(stages.assessor) as channel:
        server = grpc.aio.server()
        assessor_pb2_grpc.add_AssessorServiceServicer_to_server(
            AssessorWithoutGates(assessor_pb2_grpc.AssessorServiceStub(channel)), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            old = Stages(stages.collator, f"127.0.0.1:{port}", stages.refiner)
            async with (
                fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
                orchestrator(old, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
            ):
                run, _ = await finished(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True))
        finally:
            await server.stop(0)
    assert run.status == pb.RUN_STATUS_NEEDS_APPROVAL
    assert list(run.gate.deciding_rules) == ["gates_evaluated"]
    assert "gate evaluation failed: UNIMPLEMENTED" in run.gate.summary


async def test_approval_workflow_identity_rights_and_audit_trail(stages: Stages, database_url: str) -> None:
    async with (
        gated(stages) as wired,
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
    ):
        env = {"SWARM_TEST_WRITERS": "0"}
        async with orchestrator(wired, named(servers), database_url, **env) as orch:
            alice, bob = as_key(orch, "alice", "approver"), as_key(orch, "bob@example.com", "approver")
            held, _ = await finished(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True))
            other, _ = await finished(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True))
            assert held.status == other.status == pb.RUN_STATUS_NEEDS_APPROVAL
            pending = await orch.stub.ListPendingApprovals(pb.ListPendingApprovalsRequest())
            assert [p.run.id for p in pending.runs] == [held.id, other.id]  # oldest first
            assert pending.runs[0].gate.outcome == common_pb2.GATE_OUTCOME_NEEDS_APPROVAL
            assert pending.runs[0].run.status == pb.RUN_STATUS_NEEDS_APPROVAL

            async with keyless(orch) as anonymous_stub:
                with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                    await anonymous_stub.ApproveRun(pb.ApproveRunRequest(run_id=held.id))
            assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "authorization: Bearer <key>" in (anonymous.value.details() or "")
            with pytest.raises(grpc.aio.AioRpcError) as intruder:
                await orch.stub.ApproveRun(pb.ApproveRunRequest(run_id=held.id), metadata=as_key(orch, "mallory"))
            assert intruder.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert "mallory may not approve runs" in (intruder.value.details() or "")
            garbled_user = (*alice, ("x-swarm-user", "alice smith"))
            with pytest.raises(grpc.aio.AioRpcError) as garbled:
                await orch.stub.ApproveRun(pb.ApproveRunRequest(run_id=held.id), metadata=garbled_user)
            assert garbled.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            still = (await orch.stub.GetRun(pb.GetRunRequest(run_id=held.id))).run
            assert still.status == pb.RUN_STATUS_NEEDS_APPROVAL and len(still.audit) == 1

            approved = (
                await orch.stub.ApproveRun(
                    pb.ApproveRunRequest(run_id=held.id, comment="read the code, fine"), metadata=alice
                )
            ).run
            assert approved.status == pb.RUN_STATUS_SUCCEEDED
            assert [(a.actor, a.action, a.comment) for a in approved.audit][1:] == [
                ("alice", pb.AUDIT_ACTION_APPROVED, "read the code, fine")
            ]
            assert approved.audit[1].time.ToDatetime() >= approved.audit[0].time.ToDatetime()

            with pytest.raises(grpc.aio.AioRpcError) as twice:
                await orch.stub.RejectRun(pb.RejectRunRequest(run_id=held.id), metadata=bob)
            assert twice.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert f"run {held.id} is succeeded (approved by alice at " in (twice.value.details() or "")
            assert "not waiting for approval" in (twice.value.details() or "")

            rejected = (
                await orch.stub.RejectRun(
                    pb.RejectRunRequest(run_id=other.id, comment="no input validation"),
                    metadata=bob,
                )
            ).run
            assert rejected.status == pb.RUN_STATUS_REJECTED
            assert rejected.error == "rejected by bob@example.com: no input validation"
            assert not (await orch.stub.ListPendingApprovals(pb.ListPendingApprovalsRequest())).runs

            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await orch.stub.ApproveRun(pb.ApproveRunRequest(run_id="nope"), metadata=alice)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        # A restarted orchestrator on the same database returns the same trail.
        async with orchestrator(wired, named(servers), database_url, **env) as orch:
            for before in (approved, rejected):
                after = (await orch.stub.GetRun(pb.GetRunRequest(run_id=before.id))).run
                assert after == before
            listing = {r.id: r.status for r in (await orch.stub.ListRuns(pb.ListRunsRequest())).runs}
            assert listing == {held.id: pb.RUN_STATUS_SUCCEEDED, other.id: pb.RUN_STATUS_REJECTED}


async def test_a_run_that_does_not_wait_cannot_be_approved_and_only_approver_keys_approve(
    stages: Stages, sqlite_url: str
) -> None:
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        run, _ = await finished(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True))
        assert run.status == pb.RUN_STATUS_SUCCEEDED  # the default gates pass a clean answer
        assert [r.name for r in run.gate.rules] == ["no_sandbox_violation"]
        with pytest.raises(grpc.aio.AioRpcError) as done:
            await orch.stub.ApproveRun(pb.ApproveRunRequest(run_id=run.id), metadata=as_key(orch, "alice", "approver"))
        assert done.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert f"run {run.id} is succeeded, not waiting for approval" in (done.value.details() or "")
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), sqlite_url) as orch,
    ):
        with pytest.raises(grpc.aio.AioRpcError) as nobody:
            await orch.stub.ApproveRun(pb.ApproveRunRequest(run_id=run.id), metadata=as_key(orch, "alice"))
        assert nobody.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "only approver keys of tenant local may" in (nobody.value.details() or "")


# Two right programs that part on negative input (a probe mutates fib(0) to fib(-1)), so they fall
# into two behaviour clusters of one; neither has a docstring, so only agreement can split them.
ITERATIVE = """```python
def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
```"""
SHIFTED = """```python
def fib(n):
    if n < 2:
        return n
    a, b = 0, 1
    for _ in range(n - 1):
        a, b = b, a + b
    return b
```"""


async def test_feedback_moves_the_reputation_prior_and_the_ranking(stages: Stages, database_url: str) -> None:
    async with (
        fakes((Behaviour.ANSWER, ITERATIVE), (Behaviour.ANSWER, SHIFTED)) as servers,
        orchestrator(stages, named(servers), database_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        request = pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, skip_refine=True)
        first, _ = await finished(orch.stub, request)
        assert first.status == pb.RUN_STATUS_SUCCEEDED
        assert all(c.reputation == 1.0 for c in first.candidates)  # no history: neutral
        assert first.candidates[0].behaviour != first.candidates[1].behaviour
        winner, loser = first.candidates[0], first.candidates[1]
        assert winner.scores.tests_passed == loser.scores.tests_passed == 3
        assert winner.scores.overall == loser.scores.overall  # a tie only latency breaks

        async with keyless(orch) as anonymous_stub:
            with pytest.raises(grpc.aio.AioRpcError) as anonymous:
                await anonymous_stub.SubmitFeedback(pb.SubmitFeedbackRequest(run_id=first.id, rating=3))
        assert anonymous.value.code() == grpc.StatusCode.UNAUTHENTICATED
        carol = as_key(orch, "carol")
        for bad, message in (
            (pb.SubmitFeedbackRequest(run_id=first.id, rating=6), "rating is 6; rate the answer 1"),
            (
                pb.SubmitFeedbackRequest(run_id=first.id, rating=4, preferred_candidate_id="c9"),
                "preferred_candidate_id 'c9' is not a candidate of run",
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await orch.stub.SubmitFeedback(bad, metadata=carol)
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert message in (refused.value.details() or "")

        feedback = pb.SubmitFeedbackRequest(
            run_id=first.id, rating=1, preferred_candidate_id=loser.id, comment="the other one reads better"
        )
        reply = await orch.stub.SubmitFeedback(feedback, metadata=carol)
        assert reply.feedback.user == "carol" and reply.feedback.rating == 1
        moved = {(r.scope, r.name): r for r in reply.reputation}
        liked, disliked = (
            moved[(pb.REPUTATION_SCOPE_INSTANCE, loser.instance)],
            moved[(pb.REPUTATION_SCOPE_INSTANCE, winner.instance)],
        )
        assert liked.multiplier > liked.multiplier_before and disliked.multiplier < disliked.multiplier_before
        assert liked.multiplier > 1.0 > disliked.multiplier
        # Submitting again replaces carol's feedback: nothing is counted twice.
        again = await orch.stub.SubmitFeedback(feedback, metadata=carol)
        assert {(r.scope, r.name): r.multiplier for r in again.reputation} == {
            key: r.multiplier for key, r in moved.items()
        }
        stored = (await orch.stub.GetRun(pb.GetRunRequest(run_id=first.id))).run
        assert [(f.user, f.rating, f.preferred_candidate_id) for f in stored.feedback] == [("carol", 1, loser.id)]

        second, _ = await finished(orch.stub, request)
        ranked = {c.instance: c for c in second.candidates}
        assert second.candidates[0].scores.overall > second.candidates[1].scores.overall
        assert second.candidates[0].instance == loser.instance, [
            (c.instance, c.scores.overall) for c in second.candidates
        ]
        assert ranked[loser.instance].reputation == pytest.approx(liked.multiplier, abs=0.05)
        assert ranked[loser.instance].reputation > 1.0 > ranked[winner.instance].reputation

        listing = await orch.stub.ListReputation(pb.ListReputationRequest())
        by_key = {(r.scope, r.name): r for r in listing.reputation}
        assert by_key[(pb.REPUTATION_SCOPE_INSTANCE, loser.instance)].multiplier > 1.0
        assert by_key[(pb.REPUTATION_SCOPE_MODEL, "qwen")].observations > 0
        assert all(r.multiplier_before == 1.0 for r in listing.reputation)  # no "since": against no history


async def test_feedback_on_a_run_without_an_answer_is_refused(stages: Stages, sqlite_url: str) -> None:
    async with (
        fakes((Behaviour.HTTP_500, FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), sqlite_url, SWARM_LLM_RETRY_ATTEMPTS="1", SWARM_TEST_WRITERS="0") as orch,
    ):
        carol = as_key(orch, "carol")
        events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1))
        assert error is not None
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await orch.stub.SubmitFeedback(pb.SubmitFeedbackRequest(run_id=events[0].run_id, rating=2), metadata=carol)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "without an answer" in (refused.value.details() or "")


async def test_run_and_quality_reports_in_both_formats(stages: Stages, database_url: str) -> None:
    async with (
        gated(stages) as wired,
        fakes((Behaviour.ANSWER, FIB_REPLY), (Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(wired, named(servers), database_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        alice, carol = as_key(orch, "alice", "approver"), as_key(orch, "carol")
        start = dt.datetime.now(dt.UTC)
        passed, _ = await finished(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, skip_refine=True))
        held, _ = await finished(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1))
        await orch.stub.ApproveRun(pb.ApproveRunRequest(run_id=held.id, comment="ok"), metadata=alice)
        await orch.stub.SubmitFeedback(
            pb.SubmitFeedbackRequest(run_id=passed.id, rating=5, preferred_candidate_id=passed.final.candidate_id),
            metadata=carol,
        )

        md = await orch.stub.GetRunReport(pb.GetRunReportRequest(run_id=held.id))
        assert md.format == pb.REPORT_FORMAT_MARKDOWN
        for needle in (
            f"# Run {held.id}",
            "- status: **succeeded**",
            "## Final answer:",
            "## Candidates",
            "## Consensus",
            "## Refinement",
            "## Quality gates",
            "**needs_approval**: needs approval: consensus_reached",
            "| consensus_reached | consensus_reached | FAIL | needs_approval |",
            "**held** by swarm-gates",
            "**approved** by alice: ok",
        ):
            assert needle in md.content, needle
        doc = json.loads(
            (
                await orch.stub.GetRunReport(pb.GetRunReportRequest(run_id=passed.id, format=pb.REPORT_FORMAT_JSON))
            ).content
        )
        assert doc["run"]["status"] == "succeeded" and doc["gate"]["outcome"] == "pass"
        assert [c["id"] for c in doc["candidates"]] == [c.id for c in passed.candidates]
        assert doc["candidates"][0]["visible_tests"] == {"passed": 3, "total": 3}
        assert doc["consensus"]["reached"] is True and doc["clusters"]
        assert doc["feedback"][0]["user"] == "carol" and doc["feedback"][0]["rating"] == 5
        assert doc["refinement"] is None and doc["approvals"] == []

        request = pb.GetQualityReportRequest(format=pb.REPORT_FORMAT_JSON)
        request.since.FromDatetime(start - dt.timedelta(seconds=1))
        metrics = json.loads((await orch.stub.GetQualityReport(request)).content)
        assert metrics["runs"] == 2 and metrics["status"] == {"succeeded": 2}
        assert metrics["success_rate"] == 1.0
        assert metrics["consensus_rate"] == 0.5
        assert metrics["gates"]["outcomes"] == {"needs_approval": 1, "pass": 1}
        assert metrics["gates"]["deciding_rules"] == {"consensus_reached": 1}
        assert metrics["approvals"] == {"approved": 1, "rejected": 0, "pending": 0}
        assert metrics["feedback"] == {"count": 1, "mean_rating": 5.0}
        assert metrics["refinement"]["attempted"] + metrics["refinement"]["skipped"] == 1
        models = {m["name"]: m for m in metrics["reputation"]["models"]}
        assert models["qwen"]["multiplier"] > 1.0 and models["qwen"]["multiplier_before"] == 1.0
        assert 0.0 < metrics["mean_overall"] <= 1.0

        request.format = pb.REPORT_FORMAT_MARKDOWN
        text = (await orch.stub.GetQualityReport(request)).content
        assert "| success rate | 100% |" in text and "## Reputation by model" in text and "| qwen |" in text

        future = pb.GetQualityReportRequest(format=pb.REPORT_FORMAT_JSON)
        future.since.FromDatetime(dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
        empty = json.loads((await orch.stub.GetQualityReport(future)).content)
        assert empty["runs"] == 0 and empty["success_rate"] is None
        bad = pb.GetQualityReportRequest()
        bad.since.FromDatetime(start)
        bad.until.FromDatetime(start - dt.timedelta(days=1))
        with pytest.raises(grpc.aio.AioRpcError) as backwards:
            await orch.stub.GetQualityReport(bad)
        assert backwards.value.code() == grpc.StatusCode.INVALID_ARGUMENT


HOARDING_FIB_REPLY = """This one keeps a large table around:

```python
TABLE = bytearray(8 * 1024**3)


def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
```
"""


async def test_a_sandbox_limit_travels_from_the_assessment_to_the_gate(stages: Stages, sqlite_url: str) -> None:
    """Assessment.limit becomes Candidate.limit and GateCandidate.limit: the default gates hold the answer."""
    async with (
        fakes((Behaviour.ANSWER, HOARDING_FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        run, _ = await finished(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True))
        (hog,) = run.candidates
        assert hog.error == "error while loading: MemoryError"
        assert hog.limit == common_pb2.SANDBOX_LIMIT_MEMORY
        assert all(t.limit == common_pb2.SANDBOX_LIMIT_MEMORY for t in hog.tests)
        assert run.status == pb.RUN_STATUS_NEEDS_APPROVAL
        assert list(run.gate.deciding_rules) == ["no_sandbox_violation"]
        assert run.gate.rules[0].detail.startswith(f"{hog.id}: memory limit in its execution; ")
        stored = (await orch.stub.GetRun(pb.GetRunRequest(run_id=run.id))).run
        assert stored.candidates[0].limit == common_pb2.SANDBOX_LIMIT_MEMORY
