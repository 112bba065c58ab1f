"""Refinement's rules without a server: keep-or-drop, what the refiner is shown, and the rounds over
plain-function stages (``tests/orchestrator/offline.py``)."""

from __future__ import annotations

import grpc

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarm_orchestrator.refinement import keep_or_drop, refine_top, same_program
from swarmlib import assessment_score
from tests.orchestrator.offline import Scripted, Verdict, fenced, offline, rpc_error


def best(passed: int = 1, total: int = 2, correctness: float = 0.5, style: float = 1.0) -> pb.Candidate:
    scores = common_pb2.Scores(
        tests_passed=passed, tests_total=total, correctness=correctness, completeness=1.0, style=style
    )
    return pb.Candidate(id="c1", scores=scores)


def attempt(passed: int, total: int = 2, overall: float = 0.0) -> common_pb2.Scores:
    return common_pb2.Scores(tests_passed=passed, tests_total=total, overall=overall)


def test_an_attempt_not_worse_on_both_counts_is_kept() -> None:
    floor = assessment_score(0.5, 1.0, 1.0)
    decision = keep_or_drop(attempt(1, overall=floor), best())
    assert decision.kept and decision.why == f"assessed {floor:.3f} >= best c1 {floor:.3f}, tests 1/2"
    assert keep_or_drop(attempt(2, overall=1.0), best()).kept


def test_an_attempt_worse_on_either_count_is_dropped() -> None:
    floor = assessment_score(0.5, 1.0, 1.0)
    lower = keep_or_drop(attempt(2, overall=floor - 0.01), best())
    assert not lower.kept and lower.why == f"assessed {floor - 0.01:.3f} vs best c1 {floor:.3f}, tests 2/2 vs 1/2"
    # A higher assessment score does not buy back a visible test the best answer passes.
    assert not keep_or_drop(attempt(0, overall=1.0), best(passed=1, correctness=0.0, style=0.0)).kept


def _candidate(cid: str, behaviour: str, code: str) -> pb.Candidate:
    return pb.Candidate(id=cid, behaviour=behaviour, code=code)


def test_refinement_shows_answers_that_behave_differently_before_look_alikes() -> None:
    ranked = [
        _candidate("c1", "A", "def f(): return 1"),
        _candidate("c2", "A", "def f():\n    x = 1\n    return x"),
        _candidate("c3", "A", "def f():  return 1"),
        _candidate("c4", "B", "def f(): return 2"),
    ]
    assert [c.id for c in refine_top(ranked[0], ranked)] == ["c1", "c4", "c2"]
    # A kept refinement (no behaviour signature of its own) leads; the same code is never repeated.
    refined = _candidate("r1", "", "def f(): return 1")
    assert [c.id for c in refine_top(refined, ranked)] == ["r1", "c2", "c4"]
    no_probes = [_candidate(c.id, "", c.code) for c in ranked]
    assert [c.id for c in refine_top(no_probes[0], no_probes)] == ["c1", "c2", "c4"]


def test_the_same_program_ignores_layout_only() -> None:
    assert same_program(_candidate("a", "", "def f(): return 1"), _candidate("b", "", "def f():\n  return 1"))
    assert not same_program(_candidate("a", "", "def f(): return 1"), _candidate("b", "", "def f(): return 2"))


WRONG = "def f(n):\n    return n\n"
WRONG_TOO = "def f(n):\n    return n * 1\n"
RIGHT = "def f(n):\n    return n + 1\n"
WORSE = "def f(n):\n    return -1\n"
VERDICTS = {
    WRONG: Verdict(1, behaviour="W"),
    WRONG_TOO: Verdict(1, behaviour="W"),
    RIGHT: Verdict(2, behaviour="R"),
    WORSE: Verdict(0, behaviour="X"),
}
REPLIES = {"a": fenced(WRONG), "b": fenced(WRONG_TOO)}


async def test_a_better_attempt_is_kept_and_becomes_the_answer(sqlite_url: str) -> None:
    scripted = Scripted(dict(VERDICTS), refinements=[fenced(RIGHT)])
    async with offline(sqlite_url, REPLIES, scripted) as swarm:
        run, _ = await swarm.run()
        stored = await swarm.store.get_run(run.id)
    refinement = run.refinement
    assert refinement.outcome == pb.REFINEMENT_OUTCOME_KEPT and refinement.kept and refinement.rounds == 1
    assert refinement.reason.startswith("kept: assessed") and refinement.explanation == "round 1 changes"
    assert run.final.candidate_id == "r1" and run.final.origin == pb.CANDIDATE_ORIGIN_REFINED
    assert [c.rank for c in run.candidates] == [1, 2, 3] and run.candidates[0].id == "r1"
    assert {c.id for c in run.candidates[1:]} == {"c1", "c2"}, "the swarm's answers follow (their order: latency)"
    assert [e.refined.outcome for e in swarm.streamed("refined")] == [pb.REFINEMENT_OUTCOME_KEPT]
    # Two answers and the test writer at 10 completion tokens each, the refinement at 30.
    assert run.usage.completion_tokens == 10 + 10 + 10 + 30, "the test writer's and the refinement's tokens count"
    assert stored.refinement == refinement


async def test_a_worse_attempt_is_dropped_kept_on_record_and_shown_to_the_next_round(sqlite_url: str) -> None:
    scripted = Scripted(dict(VERDICTS), refinements=[fenced(WORSE), fenced(WORSE.replace("-1", "-2"))])
    async with offline(sqlite_url, REPLIES, scripted) as swarm:
        run, _ = await swarm.run()
    assert run.refinement.outcome == pb.REFINEMENT_OUTCOME_DROPPED and not run.refinement.kept
    assert run.refinement.rounds == 2 and run.final.origin == pb.CANDIDATE_ORIGIN_SWARM
    assert [(c.id, c.rank) for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_REFINED] == [("r2", 0)]
    second = scripted.refine_requests[1]
    assert second.previous.reason.startswith("assessed 0.") and "dropped" not in second.previous.reason
    outcomes = [e.refined.outcome for e in swarm.streamed("refined")]
    assert outcomes == [pb.REFINEMENT_OUTCOME_DROPPED, pb.REFINEMENT_OUTCOME_DROPPED]


async def test_a_refiner_outage_skips_refinement_and_ends_the_rounds(sqlite_url: str) -> None:
    scripted = Scripted(dict(VERDICTS), fail={"refine": rpc_error(grpc.StatusCode.UNAVAILABLE, "refiner down")})
    async with offline(sqlite_url, REPLIES, scripted) as swarm:
        run, error = await swarm.run()
    assert error is None and run.status == pb.RUN_STATUS_SUCCEEDED
    assert run.refinement.outcome == pb.REFINEMENT_OUTCOME_SKIPPED and run.refinement.rounds == 1
    assert run.refinement.reason == "skipped: refiner failed (UNAVAILABLE: refiner down)"
    assert [c for c in scripted.calls if c.startswith("refine")] == ["refine 1"]


async def test_an_attempt_the_assessor_cannot_judge_is_dropped_and_ends_the_rounds(sqlite_url: str) -> None:
    scripted = Scripted(dict(VERDICTS), refinements=[fenced(RIGHT), fenced(RIGHT)], fail_assess_of_refinements=True)
    async with offline(sqlite_url, REPLIES, scripted) as swarm:
        run, _ = await swarm.run()
    assert run.refinement.outcome == pb.REFINEMENT_OUTCOME_DROPPED and run.refinement.rounds == 1
    assert run.refinement.reason == "dropped: assessment failed: UNAVAILABLE: assessor down"
    assert run.final.origin == pb.CANDIDATE_ORIGIN_SWARM


async def test_no_healthy_instance_skips_refinement_without_a_call(sqlite_url: str) -> None:
    scripted = Scripted(dict(VERDICTS), refinements=[fenced(RIGHT)])
    async with offline(sqlite_url, REPLIES, scripted, SWARM_UNHEALTHY_AFTER="1") as swarm:
        pool = swarm.pipeline.pool

        def instances_go_down() -> None:
            for name in swarm.instances:
                pool.failed(name, "down for the test")

        scripted.after_assess = instances_go_down
        run, _ = await swarm.run()
    assert run.refinement.outcome == pb.REFINEMENT_OUTCOME_SKIPPED and run.refinement.rounds == 0
    assert run.refinement.reason == "skipped: no healthy instance" and not scripted.refine_requests
