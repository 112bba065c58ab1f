"""The adaptive swarm's rule (no model, no server): its sizes, when an answer is settled, and the
rounds that ``grow`` asks for; then whole offline runs that grow and stop."""

from __future__ import annotations

from swarm.v1 import assessor_pb2, common_pb2, orchestrator_pb2 as pb
from swarm_cli.render import progress_line
from swarm_orchestrator.growth import Growth, Judged, grow, limited, plan, settled
from swarm_orchestrator.ranking import Ranking
from swarm_orchestrator.stages import Collation
from tests.orchestrator.offline import Scripted, Verdict, fenced, offline

MAJORITY = [common_pb2.Cluster(id=0, candidate_ids=["c1", "c2", "c3"]), common_pb2.Cluster(id=1, candidate_ids=["c4"])]
PAIR = [
    common_pb2.Cluster(id=0, candidate_ids=["c1", "c2"]),
    common_pb2.Cluster(id=1, candidate_ids=["c3"]),
    common_pb2.Cluster(id=2, candidate_ids=["c4"]),
]
ALONE = [common_pb2.Cluster(id=k, candidate_ids=[f"c{k + 1}"]) for k in range(3)]


def answer(
    cid: str = "c1", *, visible: tuple[int, int] = (0, 0), generated: tuple[int, int] = (0, 0), dual: float = 0.0
) -> pb.Candidate:
    best = pb.Candidate(id=cid, code="def f():\n    return 1\n", origin=pb.CANDIDATE_ORIGIN_SWARM)
    best.scores.tests_passed, best.scores.tests_total = visible
    best.scores.generated_passed, best.scores.generated_total = generated
    best.scores.dual_agreement = dual
    return best


def swarm(best: pb.Candidate, size: int, models: str = "") -> list[pb.Candidate]:
    """``best`` (c1) and the other answers c2..c<size>, answer k written by ``models.split()[k-1]``."""
    answers = [best] + [answer(f"c{k}") for k in range(2, size + 1)]
    for each, model in zip(answers, models.split(), strict=False):
        each.model = model
    return answers


def consensus(share: float, reached: bool) -> common_pb2.Consensus:
    return common_pb2.Consensus(reached=reached, share=share, majority_cluster_id=0, confidence=share)


def test_sizes_go_from_the_start_by_the_step_to_the_limit() -> None:
    assert Growth(3, 2, 7).sizes() == [3, 5, 7]
    assert Growth(3, 2, 6).sizes() == [3, 5, 6]
    assert Growth(2, 1, 4).sizes() == [2, 3, 4]
    assert Growth(3, 2, 3).sizes() == [3]


def test_the_limit_is_the_request_or_seven_within_the_server_limit_and_the_budget() -> None:
    assert plan(0, 16) == Growth(3, 2, 7)
    assert plan(0, 5) == Growth(3, 2, 5)
    assert plan(10, 16, start=2, step=4) == Growth(2, 4, 10)
    assert plan(2, 16) == Growth(2, 2, 2), "a swarm of 2 at most starts with 2"
    assert limited(plan(0, 16), 4) == Growth(3, 2, 4), "the budget shrank the run to 4"
    assert limited(plan(0, 16), 1) == Growth(1, 2, 1)


def test_a_tested_consensus_is_settled() -> None:
    best = answer(visible=(2, 2))
    assert settled(best, consensus(0.75, True), MAJORITY, swarm(best, 4)).settled
    # Without visible tests: the generated tests' dual agreement over two thirds of the swarm.
    generated = answer(generated=(8, 10), dual=1.0)
    assert settled(generated, consensus(0.75, True), MAJORITY, swarm(generated, 4)).settled
    assert not settled(generated, consensus(0.6, True), MAJORITY, swarm(generated, 5)).settled


def test_passing_every_visible_test_with_one_agreeing_answer_is_settled() -> None:
    best = answer(visible=(1, 1))
    verdict = settled(best, consensus(0.5, False), PAIR, swarm(best, 4))
    assert verdict.settled and "1 other answer(s) agree" in verdict.reason


def test_agreement_of_one_model_alone_does_not_settle_a_swarm_of_several() -> None:
    best = answer(visible=(2, 2))
    one_model = swarm(best, 3, "weak weak strong")
    one_model[2].scores.tests_passed, one_model[2].scores.tests_total = 2, 2  # the rival passes as many
    verdict = settled(best, consensus(2 / 3, True), PAIR[:2], one_model)
    assert not verdict.settled
    rival = "and c3 of strong passes as many visible tests"
    assert verdict.reason == f"the 2 answers that agree with c1 are all from weak, {rival}"
    assert settled(best, consensus(2 / 3, True), PAIR[:2], swarm(best, 3, "weak strong strong")).settled
    # A swarm of one model's instances (the local default) has no other agreement to wait for.
    assert settled(best, consensus(2 / 3, True), PAIR[:2], swarm(best, 3, "qwen qwen qwen")).settled


def test_the_only_answer_that_passes_every_visible_test_is_settled() -> None:
    best = answer(visible=(2, 2))
    answers = swarm(best, 3)
    answers[1].scores.tests_passed, answers[1].scores.tests_total = 1, 2
    verdict = settled(best, consensus(1 / 3, False), ALONE, answers)
    assert verdict.settled and verdict.reason == "c1 passes every visible test and every other answer fails one"
    only = settled(best, consensus(1.0, False), ALONE[:1], [best])
    assert not only.settled, "with no other answer, nothing has told it apart"


def test_agreement_of_one_model_settles_when_the_other_models_fail_a_visible_test_it_passes() -> None:
    best = answer(visible=(2, 2))
    answers = swarm(best, 3, "weak weak strong")
    answers[2].scores.tests_passed, answers[2].scores.tests_total = 1, 2
    assert settled(best, consensus(2 / 3, True), PAIR[:2], answers).settled
    # With no visible test the tests cannot tell them apart: any other model's answer is a rival.
    untested = answer(generated=(8, 10), dual=1.0)
    verdict = settled(untested, consensus(2 / 3, True), PAIR[:2], swarm(untested, 3, "weak weak strong"))
    assert not verdict.settled and verdict.reason.endswith("c3 of strong passes as many visible tests")


def test_what_is_not_settled_says_why() -> None:
    best = answer(visible=(2, 2))
    answers = swarm(best, 3)
    answers[1].scores.tests_passed, answers[1].scores.tests_total = 2, 2  # c2 passes them too, and behaves otherwise
    alone = settled(best, consensus(1 / 3, False), ALONE, answers)
    assert not alone.settled and alone.reason == "best answer c1 passes the visible tests but no other answer agrees"
    failing = settled(answer(visible=(1, 2)), consensus(0.75, True), MAJORITY, swarm(answer(visible=(1, 2)), 4))
    assert not failing.settled and failing.reason == "best answer c1 fails 1 of 2 visible test(s)"
    untested = settled(answer(), consensus(0.75, True), MAJORITY, swarm(answer(), 4))
    assert not untested.settled and untested.reason == "agreement (3 of 4) that no executed test backs"
    split = settled(answer(), consensus(1 / 3, False), ALONE, swarm(answer(), 3))
    assert not split.settled and split.reason == "no tested consensus (largest group 1 of 3)"


def _judged(best: pb.Candidate, clusters: list[common_pb2.Cluster], reached: bool, *others: pb.Candidate) -> Judged:
    collation = Collation(consensus=consensus(0.6, reached), clusters=tuple(clusters))
    return Judged(assessor_pb2.AssessResponse(), collation, Ranking((best, *others), {}))


async def test_grow_asks_the_next_slots_until_settled() -> None:
    asked: list[tuple[int, int]] = []
    events: list[pb.RunSwarmResponse] = []
    judgements = [_judged(answer(visible=(1, 1)), PAIR, False)]  # the second judgement is settled

    async def more(first: int, count: int) -> list[pb.Candidate]:
        asked.append((first, count))
        return [answer(f"c{first + k + 1}") for k in range(count)]

    async def judge(answers: list[pb.Candidate]) -> Judged:
        assert [a.id for a in answers] == ["c1", "c2", "c3", "c4", "c5"], "every answer so far, judged together"
        return judgements.pop()

    async def emit(event: pb.RunSwarmResponse) -> None:
        events.append(event)

    first = _judged(answer(visible=(1, 1)), ALONE, False, answer("c2", visible=(1, 1)))  # c2 passes as many
    start = [answer(f"c{k}") for k in (1, 2, 3)]
    result = await grow(Growth(3, 2, 7), start, first, more, judge, emit)
    assert asked == [(3, 2)] and result.collation.clusters == tuple(PAIR)
    assert [e.grown for e in events] == [
        pb.Grown(round=2, added=2, size=5, reason="best answer c1 passes the visible tests but no other answer agrees")
    ]
    line = progress_line(events[0])
    assert line == "round 2: +2 instances (5 in all), not settled: " + events[0].grown.reason


async def test_grow_stops_at_the_limit_and_goes_on_past_a_round_that_brought_nothing() -> None:
    asked: list[tuple[int, int]] = []

    async def more(first: int, count: int) -> list[pb.Candidate]:
        asked.append((first, count))
        return []  # every added slot failed

    async def judge(answers: list[pb.Candidate]) -> Judged:
        raise AssertionError("nothing new to judge")

    async def emit(event: pb.RunSwarmResponse) -> None:
        pass

    first = _judged(answer(), ALONE, False)
    assert await grow(Growth(3, 2, 6), [answer()], first, more, judge, emit) is first
    assert asked == [(3, 2), (5, 1)]


RIGHT = "def f(n):\n    return n + 1\n"
RIGHT_TOO = "def f(n):\n    return 1 + n\n"
WRONG = "def f(n):\n    return n\n"
WRONG_TOO = "def f(n):\n    return n * 2\n"
RIVAL = "def f(n):\n    return n + 1 if n < 10 else n\n"  # passes the visible tests, wrong beyond them
VERDICTS = {
    WRONG: Verdict(1, behaviour="W"),
    WRONG_TOO: Verdict(0, behaviour="W2"),
    RIVAL: Verdict(2, behaviour="X"),
    RIGHT: Verdict(2, behaviour="R"),
    RIGHT_TOO: Verdict(2, behaviour="R"),
}


async def test_an_offline_run_grows_while_it_disagrees_and_stops_once_settled(sqlite_url: str) -> None:
    replies = dict(zip("abcdefg", map(fenced, [WRONG, RIVAL, RIGHT, RIGHT_TOO, RIGHT, RIGHT, RIGHT]), strict=True))
    scripted = Scripted(dict(VERDICTS))
    async with offline(sqlite_url, replies, scripted) as swarm:
        run, error = await swarm.run(refine=False, growth=Growth(3, 2, 7))
        stored = await swarm.store.get_run(run.id)
    assert error is None and run.status == pb.RUN_STATUS_SUCCEEDED
    assert [e.grown.size for e in swarm.streamed("grown")] == [5], "settled after the second round"
    assert sorted(e.instance_started.slot for e in swarm.streamed("instance_started")) == [0, 1, 2, 3, 4]
    assert sorted(c.id for c in stored.candidates) == ["c1", "c2", "c3", "c4", "c5"]
    assert {c.instance for c in stored.candidates} == set("abcde"), "slots go on round-robin"
    assert run.final.candidate_id in ("c3", "c4", "c5") and scripted.calls.count("assess") == 2
    assert run.usage.completion_tokens == 60, "five answers and one test writer, 10 tokens each"


async def test_an_offline_run_settled_at_once_asks_no_more(sqlite_url: str) -> None:
    replies = dict(zip("abcde", map(fenced, [RIGHT, RIGHT_TOO, WRONG, RIGHT, RIGHT]), strict=True))
    async with offline(sqlite_url, replies, Scripted(dict(VERDICTS))) as swarm:
        run, error = await swarm.run(refine=False, growth=Growth(3, 2, 5))
    assert error is None and not swarm.streamed("grown") and len(run.candidates) == 3
