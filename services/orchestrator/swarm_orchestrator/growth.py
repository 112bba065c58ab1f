"""The adaptive swarm: start small and add instances only while the answer is not settled.

A fixed swarm pays for every instance on every task, though most tasks are settled by the first
few answers: they agree and the tests back them. An adaptive run asks ``start`` instances, judges
their answers (assessment, collation, ranking), and while the best answer is not *settled* adds
``step`` more, judging every answer so far together, until it is settled or the swarm reaches its
``limit``. The rule (``settled``), the sizes and why: docs/adaptive.md.

The run holds its whole ``limit`` from the start (the queue's slots and the budget's upper bound),
so growing never waits for capacity nor overruns a budget; slot indices continue from round to
round, so the instances stay assigned round-robin as for a fixed swarm of the same size.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

from swarm.v1 import assessor_pb2, common_pb2, orchestrator_pb2 as pb

from .consensus import consensus_for
from .ranking import Ranking
from .sizing import MAX_AUTO_SIZE
from .stages import Collation

# Measured on the recorded pools (docs/adaptive.md): 3 answers first, then 2 more a round.
DEFAULT_START = 3
DEFAULT_STEP = 2

Emit = Callable[[pb.RunSwarmResponse], Awaitable[None]]


@dataclass(frozen=True)
class Growth:
    """How an adaptive run grows: ``start`` answers first, ``step`` more a round, at most ``limit``."""

    start: int
    step: int
    limit: int

    def sizes(self) -> list[int]:
        """The answers asked for after each round, e.g. [3, 5, 7]."""
        sizes = [min(self.start, self.limit)]
        while sizes[-1] < self.limit:
            sizes.append(min(self.limit, sizes[-1] + self.step))
        return sizes


def plan(requested: int, max_swarm_size: int, start: int = DEFAULT_START, step: int = DEFAULT_STEP) -> Growth:
    """The growth of a run that asked for ``requested`` answers at most (0: the automatic maximum,
    7, or the server's limit if smaller)."""
    limit = requested or min(MAX_AUTO_SIZE, max_swarm_size)
    return Growth(start=max(1, min(start, limit)), step=max(1, step), limit=limit)


def limited(growth: Growth, limit: int) -> Growth:
    """``growth`` within ``limit`` answers (what the budget left after shrinking the run)."""
    limit = max(1, min(limit, growth.limit))
    return Growth(start=min(growth.start, limit), step=growth.step, limit=limit)


@dataclass(frozen=True)
class Verdict:
    """Whether the answer so far is settled and, when it is not, why (streamed in ``Grown``)."""

    settled: bool
    reason: str


def settled(
    best: pb.Candidate,
    collated: common_pb2.Consensus,
    clusters: Sequence[common_pb2.Cluster],
    answers: Sequence[pb.Candidate],
) -> Verdict:
    """The one rule: the best-ranked of ``answers`` (every answer so far, assessed) is settled when

    (a) the swarm's consensus stands for it as the run would claim it (``consensus.consensus_for``:
        it is in a cluster of two thirds of the answers and executed evidence backs it: every
        visible test passes, or with none the generated tests' dual agreement), or
    (b) it passes every visible test and at least one other answer agrees with it (same cluster),
        or there are other answers and none passes as many visible tests (the tests already told
        it apart);

    and, when the answers that agree with it are all one model's while other models answered too,
    no answer of another model outside its group passes as many visible tests (``_rival``):
    samples of one model share its mistakes, so against a rival that the tests cannot tell apart
    their agreement is the weakest kind and another round is worth asking.

    Anything else (no agreement, a visible test failing, agreement no test backs) is not settled.
    """
    group = next((list(c.candidate_ids) for c in clusters if best.id in c.candidate_ids), [best.id])
    rival = _rival(best, group, answers)
    if rival is not None:
        return Verdict(
            False,
            f"the {len(group)} answers that agree with {best.id} are all from {best.model}, "
            f"and {rival.id} of {rival.model} passes as many visible tests",
        )
    if consensus_for(collated, clusters, best, best).reached:
        return Verdict(True, "tested consensus")
    scores = best.scores
    mates = len(group) - 1
    if scores.tests_total and scores.tests_passed == scores.tests_total:
        if mates >= 1:
            return Verdict(True, f"{best.id} passes every visible test and {mates} other answer(s) agree")
        others = [a for a in answers if a.id != best.id]
        if others and _as_good(best, others) is None:  # one answer alone has been told apart from nothing
            return Verdict(True, f"{best.id} passes every visible test and every other answer fails one")
    if scores.tests_total and scores.tests_passed < scores.tests_total:
        failing = scores.tests_total - scores.tests_passed
        return Verdict(False, f"best answer {best.id} fails {failing} of {scores.tests_total} visible test(s)")
    if scores.tests_total:
        return Verdict(False, f"best answer {best.id} passes the visible tests but no other answer agrees")
    largest = max((len(c.candidate_ids) for c in clusters), default=1)
    count = max(len(answers), 1)
    if collated.reached:
        return Verdict(False, f"agreement ({largest} of {count}) that no executed test backs")
    return Verdict(False, f"no tested consensus (largest group {largest} of {count})")


def _rival(best: pb.Candidate, group: Sequence[str], answers: Sequence[pb.Candidate]) -> pb.Candidate | None:
    """When ``group`` (``best`` and the answers that agree with it) is several answers of one model,
    the first answer of another model outside it that passes as many visible tests as ``best``.

    Such a rival is what the weakest model's agreeing pair outvoted on HumanEval/65 and 149
    (docs/adaptive.md). Where every other model's answers fail a visible test the group passes, the
    tests have already told them apart and more answers would only be paid for. With no visible
    test every answer passes as many, so any other model's answer is a rival.
    """
    model_of = {a.id: a.model for a in answers}
    if len(group) < 2 or len(set(model_of.values())) < 2 or len({model_of.get(i, "") for i in group}) > 1:
        return None
    return _as_good(best, (a for a in answers if a.id not in group and a.model != best.model))


def _as_good(best: pb.Candidate, others: Iterable[pb.Candidate]) -> pb.Candidate | None:
    """The first of ``others`` that passes as many visible tests as ``best``: an answer the tests
    cannot tell apart from it."""
    return next((a for a in others if a.scores.tests_passed >= best.scores.tests_passed), None)


@dataclass(frozen=True)
class Judged:
    """The answers so far as assessed, collated and ranked together."""

    assessment: assessor_pb2.AssessResponse
    collation: Collation
    ranking: Ranking


# Asks ``count`` more answers from slot ``first`` on; returns those that arrived.
More = Callable[[int, int], Awaitable[list[pb.Candidate]]]
# Assesses, collates and ranks all of these answers together.
Judge = Callable[[list[pb.Candidate]], Awaitable[Judged]]


async def grow(
    growth: Growth, answers: list[pb.Candidate], judged: Judged, more: More, judge: Judge, emit: Emit
) -> Judged:
    """Rounds after the first: add ``growth.step`` answers while the answer is not settled."""
    answers = list(answers)
    sizes = growth.sizes()
    for round_number, (asked, size) in enumerate(itertools.pairwise(sizes), start=2):
        collation, ranking = judged.collation, judged.ranking
        verdict = settled(ranking.best, collation.consensus, collation.clusters, ranking.candidates)
        if verdict.settled:
            break
        event = pb.Grown(round=round_number, added=size - asked, size=size, reason=verdict.reason)
        await emit(pb.RunSwarmResponse(grown=event))
        arrived = await more(asked, size - asked)
        if arrived:
            answers.extend(arrived)
            judged = await judge(answers)
    return judged
