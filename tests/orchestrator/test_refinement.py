"""Refinement rounds through the real services: each attempt is assessed and kept only if not worse.

The fake instances answer solve prompts with a swarm answer and refinement prompts by the round
the prompt names, so every test scripts exactly what each round brings back.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NamedTuple

import pytest

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarm_bench.stack import Stages, orchestrator
from swarm_orchestrator.config import MAX_REFINE_ROUNDS, OrchestratorConfig
from swarm_orchestrator.prompts import SOLVE_SYSTEM
from swarm_orchestrator.tests_writer import TESTS_SYSTEM
from swarmlib import ConfigError
from tests.fakes.openai_server import Behaviour, FakeLLMServer
from tests.fakes.replies import FIB_REPLY, REFINED_FIB_REPLY
from tests.orchestrator.test_quality import gated
from tests.orchestrator.test_swarm import FIB_TASK, WRONG_FIB_REPLY, collect, fakes, named

# fib(0) == 0 only: 1 of the task's 3 visible tests, like WRONG_FIB_REPLY.
NEGATIVE_REPLY = "Simplified:\n\n```python\ndef fib(n):\n    return -1\n```\n\nChanges:\n- Return early.\n"
# fib(0) and fib(1) right, fib(10) wrong: 2 of 3.
HALF_FIXED_REPLY = """```python
def fib(n):
    if n <= 1:
        return n
    return n - 1
```

Changes:
- fib(1) returns 1: the base case returned 0 for it.
"""
FIXED_REPLY = REFINED_FIB_REPLY + "\nChanges:\n- Loop n times: the recursion's base case returned 0 for fib(1).\n"
ROUND = re.compile(r"refinement round (\d+)")


def by_round(solve: str, *rounds: str) -> Callable[[list[dict[str, object]]], str]:
    """Answer solve prompts with ``solve`` and refinement round i with ``rounds[i - 1]``."""

    def reply(messages: list[dict[str, object]]) -> str:
        contents = [str(m.get("content", "")) for m in messages]
        if SOLVE_SYSTEM in contents:
            return solve
        if TESTS_SYSTEM in contents:
            return "```python\nassert fib(2) == 1\n```"
        found = ROUND.search(contents[-1])
        assert found, "a refinement prompt names its round"
        return rounds[int(found.group(1)) - 1]

    return reply


def refine_prompts(servers: list[FakeLLMServer]) -> list[str]:
    """Refinement prompts in the order they were sent (the round is in each)."""
    prompts = [r.prompt for s in servers for r in s.chat_requests if r.headers["x-swarm-purpose"] == "refine"]
    return sorted(prompts, key=lambda p: int(ROUND.search(p).group(1)))  # type: ignore[union-attr]


class SwarmRun(NamedTuple):
    run: pb.Run
    events: list[pb.RunSwarmResponse]
    servers: list[FakeLLMServer]
    stored: pb.Run


async def swarm_run(
    stages: Stages,
    sqlite_url: str,
    reply: Callable[[list[dict[str, object]]], str],
    *,
    size: int = 2,
    think_refine_s: float = 0.0,
    **env: str,
) -> SwarmRun:
    """One fib run of ``size`` fake instances answering with ``reply``; the refiner's instance
    pauses ``think_refine_s`` before each refinement reply."""
    async with (
        fakes(*[(Behaviour.ANSWER, reply)] * size) as servers,
        orchestrator(stages, named(servers), sqlite_url, **env) as orch,
    ):
        for server in servers:
            server.think_s["refine"] = think_refine_s
        events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=size))
        assert error is None, error
        run = events[-1].done
        stored = (await orch.stub.GetRun(pb.GetRunRequest(run_id=run.id))).run
    return SwarmRun(run, events, servers, stored)


def refined_events(events: list[pb.RunSwarmResponse]) -> list[pb.Refined]:
    return [e.refined for e in events if e.HasField("refined")]


async def test_a_worse_first_round_is_dropped_and_a_better_second_round_kept(stages: Stages, sqlite_url: str) -> None:
    reply = by_round(WRONG_FIB_REPLY, NEGATIVE_REPLY, FIXED_REPLY)
    run, events, servers, stored = await swarm_run(stages, sqlite_url, reply)

    rounds = refined_events(events)
    assert [(r.kept, r.reason.split(":")[0]) for r in rounds] == [(False, "round 1"), (True, "round 2")]
    assert rounds[0].reason.startswith("round 1: dropped: assessed")
    refinement = run.refinement
    assert refinement.kept and refinement.rounds == 2 and refinement.candidate_id == "r2"
    assert refinement.explanation == "- Loop n times: the recursion's base case returned 0 for fib(1)."
    assert refinement.template_version == "refine_v2"
    assert refinement.reason.startswith("kept: assessed") and "round 1: dropped" in refinement.reason
    assert refinement.outcome == pb.REFINEMENT_OUTCOME_KEPT
    assert [r.outcome for r in rounds] == [pb.REFINEMENT_OUTCOME_DROPPED, pb.REFINEMENT_OUTCOME_KEPT]
    assert run.final.candidate_id == "r2" and run.final.origin == pb.CANDIDATE_ORIGIN_REFINED
    assert run.candidates[0].id == "r2" and run.candidates[0].scores.tests_passed == 3
    assert stored.refinement == refinement, "the explanation is stored with the run"

    first, second = refine_prompts(servers)
    assert "refinement round 1" in first and "Previous refinement attempt" not in first
    # Round 2 is shown round 1's rejected program, why it was rejected and what it claimed.
    previous = second[second.index("## Previous refinement attempt (round 1), not kept") :]
    assert "return -1" in previous and "Why it was not kept: assessed" in previous
    assert "What it said it changed: - Return early." in previous
    assert "## Inputs on which the answers disagree" in second and "Failing tests:" in second


async def test_a_kept_round_that_still_fails_a_test_leads_the_next_round(stages: Stages, sqlite_url: str) -> None:
    reply = by_round(WRONG_FIB_REPLY, HALF_FIXED_REPLY, NEGATIVE_REPLY)
    run, events, servers, _ = await swarm_run(stages, sqlite_url, reply)

    assert [r.kept for r in refined_events(events)] == [True, False]
    # The worse second round never replaces the kept first one, and is judged against it.
    assert run.refinement.kept and run.refinement.rounds == 2 and run.refinement.candidate_id == "r1"
    assert run.refinement.explanation == "- fib(1) returns 1: the base case returned 0 for it."
    assert "round 2: dropped: assessed" in run.refinement.reason and "best r1" in run.refinement.reason
    assert run.final.candidate_id == "r1" and run.candidates[0].scores.tests_passed == 2
    _, second = refine_prompts(servers)
    assert "### Answer 1 (r1)" in second and "Previous refinement attempt" not in second


async def test_rounds_stop_once_every_visible_test_passes(stages: Stages, sqlite_url: str) -> None:
    reply = by_round(WRONG_FIB_REPLY, FIXED_REPLY, NEGATIVE_REPLY, NEGATIVE_REPLY)
    run, _, servers, _ = await swarm_run(stages, sqlite_url, reply, SWARM_REFINE_ROUNDS="4")
    assert len(refine_prompts(servers)) == 1
    assert run.refinement.kept and run.refinement.rounds == 1 and run.final.candidate_id == "r1"
    assert run.refinement.reason.startswith("kept: assessed")

    # One answer passes every visible test but is no consensus: one round, never more.
    reply = by_round(FIB_REPLY, NEGATIVE_REPLY, NEGATIVE_REPLY)
    run, _, servers, _ = await swarm_run(stages, sqlite_url, reply, size=1, SWARM_REFINE_ROUNDS="3")
    assert len(refine_prompts(servers)) == 1 and run.refinement.rounds == 1
    assert not run.refinement.kept and run.final.origin == pb.CANDIDATE_ORIGIN_SWARM


async def test_a_settled_answer_is_not_refined(stages: Stages, sqlite_url: str) -> None:
    """Every visible test passes, the swarm agrees on it with tests behind it, the gates pass it:
    a rewrite can only lose evidence, so no refinement is asked for."""
    reply = by_round(FIB_REPLY, NEGATIVE_REPLY)
    run, events, servers, _ = await swarm_run(stages, sqlite_url, reply, SWARM_REFINE_ROUNDS="3")
    assert refine_prompts(servers) == []
    assert [r.reason for r in refined_events(events)] == [run.refinement.reason]
    assert run.refinement.reason == (
        "skipped: every visible test passes (3/3), the swarm's tested consensus is on the answer "
        "and the quality gates pass it"
    )
    assert not run.refinement.kept and run.refinement.rounds == 0
    assert run.refinement.outcome == pb.REFINEMENT_OUTCOME_SKIPPED
    assert run.final.origin == pb.CANDIDATE_ORIGIN_SWARM and run.consensus.reached
    assert not [c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_REFINED]


async def test_rounds_go_on_while_the_gates_fail(stages: Stages, sqlite_url: str) -> None:
    """Visible tests all pass but a gate (consensus, for one answer) fails: every round is tried."""
    reply = by_round(FIB_REPLY, NEGATIVE_REPLY, NEGATIVE_REPLY, NEGATIVE_REPLY)
    async with gated(stages) as wired:
        run, _, servers, _ = await swarm_run(wired, sqlite_url, reply, size=1, SWARM_REFINE_ROUNDS="3")
    assert len(refine_prompts(servers)) == 3 and run.refinement.rounds == 3
    assert run.gate.outcome == common_pb2.GATE_OUTCOME_NEEDS_APPROVAL


async def test_the_refinement_budget_bounds_rounds_and_each_call(stages: Stages, sqlite_url: str) -> None:
    # A round of 2 s leaves less than a round's time of a 3.5 s budget: no second round (and 1.5 s
    # of margin for the first call, which a loaded machine needs).
    reply = by_round(WRONG_FIB_REPLY, NEGATIVE_REPLY, NEGATIVE_REPLY, NEGATIVE_REPLY)
    run, _, servers, _ = await swarm_run(
        stages, sqlite_url, reply, size=1, think_refine_s=2.0, SWARM_REFINE_ROUNDS="3", SWARM_REFINE_BUDGET_S="3.5"
    )
    assert len(refine_prompts(servers)) == 1 and run.refinement.rounds == 1
    assert run.refinement.reason.startswith("dropped: assessed")
    stopped = r"; stopped: \d+\.\d s of SWARM_REFINE_BUDGET_S left, a round took \d+\.\d s\]$"
    assert re.search(stopped, run.refinement.reason)

    # A refiner slower than the whole budget is cut off at the budget's end.
    run, _, servers, _ = await swarm_run(
        stages, sqlite_url, reply, size=1, think_refine_s=30.0, SWARM_REFINE_BUDGET_S="1"
    )
    assert run.refinement.reason.startswith("skipped: refiner failed (DEADLINE_EXCEEDED")
    assert run.refinement.outcome == pb.REFINEMENT_OUTCOME_SKIPPED
    assert run.final.origin == pb.CANDIDATE_ORIGIN_SWARM and run.status == pb.RUN_STATUS_SUCCEEDED


async def test_a_worse_refinement_is_never_kept_however_many_rounds(stages: Stages, sqlite_url: str) -> None:
    reply = by_round(WRONG_FIB_REPLY, NEGATIVE_REPLY, NEGATIVE_REPLY, NEGATIVE_REPLY)
    run, events, servers, _ = await swarm_run(stages, sqlite_url, reply, SWARM_REFINE_ROUNDS="3")
    assert [r.kept for r in refined_events(events)] == [False, False, False]
    assert not run.refinement.kept and run.refinement.rounds == 3
    assert run.refinement.reason.startswith("dropped: assessed") and run.refinement.candidate_id == "r3"
    assert run.refinement.outcome == pb.REFINEMENT_OUTCOME_DROPPED
    assert run.final.origin == pb.CANDIDATE_ORIGIN_SWARM and run.final.candidate_id.startswith("c")
    refined = [c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_REFINED]
    assert [(c.id, c.rank) for c in refined] == [("r3", 0)], "the last attempt is kept for the record, unranked"
    assert all(c.scores.tests_passed == 1 for c in run.candidates if c.rank)
    assert len(refine_prompts(servers)) == 3


async def test_a_reply_without_code_is_dropped_and_the_last_program_stays_on_record(
    stages: Stages, sqlite_url: str
) -> None:
    reply = by_round(WRONG_FIB_REPLY, NEGATIVE_REPLY, "I would need more context to improve this.")
    run, _, servers, _ = await swarm_run(stages, sqlite_url, reply)
    assert len(refine_prompts(servers)) == 2
    refinement = run.refinement
    assert not refinement.kept and refinement.rounds == 2
    # The summary speaks of the attempt kept on record (r1), not of the empty reply.
    assert refinement.candidate_id == "r1" and refinement.explanation == "- Return early."
    assert refinement.reason.startswith("dropped: assessed") and "round 2: dropped: the reply held no code" in (
        refinement.reason
    )
    assert [(c.id, c.rank) for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_REFINED] == [("r1", 0)]


async def test_a_rewrite_of_the_same_program_is_dropped_unassessed(stages: Stages, sqlite_url: str) -> None:
    relaid = (
        "```python\ndef fib(n):\n    if n <= 1:  return 0\n    return fib(n - 1) + fib(n - 2)\n```\n\n"
        "Changes:\n- None.\n"
    )
    reply = by_round(WRONG_FIB_REPLY, relaid, FIXED_REPLY)
    run, events, servers, _ = await swarm_run(stages, sqlite_url, reply)
    first, second = refined_events(events)
    assert not first.kept and first.reason.startswith("round 1: dropped: the program is the same as c")
    assert second.kept and run.final.candidate_id == "r2"
    # Round 2 hears why round 1 was not kept.
    assert "Why it was not kept: the program is the same as" in refine_prompts(servers)[1]
    assert [c.id for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_REFINED] == ["r2"]


async def test_single_round_configuration_keeps_the_first_versions_behaviour(stages: Stages, sqlite_url: str) -> None:
    reply = by_round(WRONG_FIB_REPLY, NEGATIVE_REPLY, FIXED_REPLY)
    run, _, servers, _ = await swarm_run(stages, sqlite_url, reply, SWARM_REFINE_ROUNDS="1")
    assert len(refine_prompts(servers)) == 1
    assert not run.refinement.kept and run.refinement.rounds == 1
    assert run.refinement.reason.startswith("dropped: assessed") and "round" not in run.refinement.reason


def _config(**env: str) -> OrchestratorConfig:
    return OrchestratorConfig.from_env(
        {"SWARM_INSTANCES": '[{"name": "a", "base_url": "http://h/v1", "model": "m"}]'} | env
    )


def test_refine_rounds_default_to_two_and_fail_fast_out_of_range() -> None:
    assert _config().refine_rounds == 2
    assert _config().refine_budget_s == 120.0 and _config(SWARM_REFINE_BUDGET_S="30").refine_budget_s == 30.0
    with pytest.raises(ConfigError, match="SWARM_REFINE_BUDGET_S"):
        _config(SWARM_REFINE_BUDGET_S="0")
    assert _config(SWARM_REFINE_ROUNDS=str(MAX_REFINE_ROUNDS)).refine_rounds == MAX_REFINE_ROUNDS
    for bad, message in (("0", "must be >= 1"), (str(MAX_REFINE_ROUNDS + 1), "must be at most"), ("two", "integer")):
        with pytest.raises(ConfigError, match=f"SWARM_REFINE_ROUNDS.*{message}"):
            _config(SWARM_REFINE_ROUNDS=bad)
