"""Whole runs without a server: instances behind an httpx MockTransport, the collator, assessor and
refiner as plain functions (``tests/orchestrator/offline.py``), the store on SQLite.

What each stage's outcome makes of the run: the order of the stages, what is stored, and how a
failing stage fails or degrades the run.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

from swarm.v1 import common_pb2, orchestrator_pb2 as pb, refiner_pb2
from swarmlib import QuorumNotReachedError, StageError
from tests.orchestrator.offline import Scripted, Verdict, fenced, offline, rpc_error

RIGHT = "def f(n):\n    return n + 1\n"
RIGHT_TOO = "def f(n):\n    return 1 + n\n"
WRONG = "def f(n):\n    return n\n"
REPLIES = {"a": fenced(WRONG), "b": fenced(RIGHT), "c": fenced(RIGHT_TOO)}
VERDICTS = {WRONG: Verdict(1, behaviour="W"), RIGHT: Verdict(2, behaviour="R"), RIGHT_TOO: Verdict(2, behaviour="R")}


async def test_the_stages_run_in_order_and_the_stored_run_is_the_returned_one(sqlite_url: str) -> None:
    scripted = Scripted(dict(VERDICTS))
    async with offline(sqlite_url, REPLIES, scripted) as swarm:
        run, error = await swarm.run()
        stored = await swarm.store.get_run(run.id)
    assert error is None and run.status == pb.RUN_STATUS_SUCCEEDED
    kinds = [e.WhichOneof("event") for e in swarm.events]
    tail = [k for k in kinds if k not in ("instance_started", "instance_finished")]
    assert tail == ["assessed", "collated", "refined", "gated"]
    assert scripted.calls == ["assess", "collate", "gates", "gates"], "settled check, then the final verdict"
    assert run.final.candidate_id in ("c2", "c3") and run.consensus.reached
    assert [c.rank for c in run.candidates] == [1, 2, 3] and run.candidates[-1].id == "c1"
    assert run.refinement.outcome == pb.REFINEMENT_OUTCOME_SKIPPED and run.refinement.reason.startswith("skipped:")
    assert run.tests_found == 2 and run.analysis == "scripted analysis" and len(run.clusters) == 2
    assert run.usage.completion_tokens == 40, "three answers and the test writer, 10 tokens each"
    assert stored == run


async def test_a_failed_assessment_fails_the_run_and_keeps_every_answer(sqlite_url: str) -> None:
    scripted = Scripted(dict(VERDICTS), fail={"assess": rpc_error(grpc.StatusCode.UNAVAILABLE, "assessor down")})
    async with offline(sqlite_url, REPLIES, scripted) as swarm:
        run, error = await swarm.run()
        stored = await swarm.store.get_run(run.id)
    assert isinstance(error, StageError) and run.status == pb.RUN_STATUS_FAILED
    assert run.error == "assessment failed: UNAVAILABLE: assessor down"
    assert [c.id for c in stored.candidates] == ["c1", "c2", "c3"] and all(c.rank == 0 for c in stored.candidates)
    assert stored.usage.completion_tokens == 40 and not stored.HasField("final")  # answers and test writer


async def test_without_a_quorum_nothing_is_assessed(sqlite_url: str) -> None:
    scripted = Scripted(dict(VERDICTS))
    async with offline(sqlite_url, {"a": ""}, scripted) as swarm:  # an empty answer fails its slot
        run, error = await swarm.run(size=1)
    assert isinstance(error, QuorumNotReachedError) and "0 of 1 responses arrived" in run.error
    assert scripted.calls == [] and [f.kind for f in run.failures] == [pb.FAILURE_KIND_EMPTY]


async def test_a_collator_outage_ranks_without_consensus(sqlite_url: str) -> None:
    scripted = Scripted(dict(VERDICTS), fail={"collate": rpc_error(grpc.StatusCode.UNAVAILABLE, "collator down")})
    async with offline(sqlite_url, REPLIES, scripted) as swarm:
        run, error = await swarm.run(refine=False)
    assert error is None and run.status == pb.RUN_STATUS_SUCCEEDED
    assert run.analysis == "collation unavailable (UNAVAILABLE: collator down); ranked without consensus"
    assert not run.consensus.reached and not run.clusters and run.final.candidate_id in ("c2", "c3")
    assert swarm.streamed("collated")[0].collated.cluster_count == 0


async def test_gates_that_cannot_be_evaluated_hold_the_run_with_the_reason(sqlite_url: str) -> None:
    scripted = Scripted(dict(VERDICTS), fail={"gates": rpc_error(grpc.StatusCode.UNAVAILABLE, "no gates")})
    async with offline(sqlite_url, REPLIES, scripted) as swarm:
        run, _ = await swarm.run(refine=False)
    assert run.status == pb.RUN_STATUS_NEEDS_APPROVAL
    assert run.gate.summary == "needs approval: gates_evaluated (gate evaluation failed: UNAVAILABLE: no gates)"
    assert [(a.actor, a.action) for a in run.audit] == [("swarm-gates", pb.AUDIT_ACTION_HELD)]


async def test_a_failing_gate_fails_the_run_and_keeps_the_answer(sqlite_url: str) -> None:
    scripted = Scripted(dict(VERDICTS), gate=common_pb2.GATE_OUTCOME_FAIL)
    async with offline(sqlite_url, REPLIES, scripted) as swarm:
        run, error = await swarm.run(refine=False)
    assert error is None and run.status == pb.RUN_STATUS_FAILED
    assert run.error == "the quality gates failed the answer: scripted verdict" and run.final.code


async def test_an_interrupted_run_stores_what_had_arrived_and_what_the_stages_found(sqlite_url: str) -> None:
    scripted = Scripted(dict(VERDICTS), gate=common_pb2.GATE_OUTCOME_NEEDS_APPROVAL)  # unsettled: refinement runs
    refining = asyncio.Event()

    async def refine_forever(request: refiner_pb2.RefineRequest, timeout: float) -> refiner_pb2.RefineResponse:
        refining.set()
        await asyncio.Event().wait()
        raise AssertionError("never answers")

    scripted.refine = refine_forever  # type: ignore[method-assign]
    async with offline(sqlite_url, REPLIES, scripted) as swarm:
        running = asyncio.create_task(swarm.run())
        await refining.wait()
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
        stored = (await swarm.store.list_runs(1, ""))[0][0]
        run = await swarm.store.get_run(stored.id)
    assert run.status == pb.RUN_STATUS_FAILED and run.error.startswith("run interrupted: CancelledError")
    assert [c.id for c in run.candidates] == ["c1", "c2", "c3"] and run.usage.completion_tokens == 40
    assert run.tests_found == 2 and run.analysis == "scripted analysis" and len(run.clusters) == 2
