"""The consensus claim as a pure function: the collator's agreement, the answer, and the tests behind it."""

from __future__ import annotations

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarm_orchestrator.consensus import consensus_for

MAJORITY = [common_pb2.Cluster(id=0, candidate_ids=["c1", "c2", "c3"]), common_pb2.Cluster(id=1, candidate_ids=["c4"])]


def answer(
    cid: str = "c1",
    *,
    visible: tuple[int, int] = (0, 0),
    generated: tuple[int, int] = (10, 10),
    dual: float = 1.0,
    code: str = "def f():\n    return 1\n",
    origin: pb.CandidateOrigin = pb.CANDIDATE_ORIGIN_SWARM,
) -> pb.Candidate:
    best = pb.Candidate(id=cid, code=code, origin=origin)
    best.scores.tests_passed, best.scores.tests_total = visible
    best.scores.generated_passed, best.scores.generated_total = generated
    best.scores.dual_agreement = dual
    return best


def collated(share: float, reached: bool = True) -> common_pb2.Consensus:
    return common_pb2.Consensus(reached=reached, share=share, majority_cluster_id=0, confidence=share)


def _claimed(share: float, *, visible: tuple[int, int] = (0, 0), generated: tuple[int, int] = (10, 10)) -> bool:
    """Whether the run keeps its consensus claim for a best answer with this evidence."""
    best = answer(visible=visible, generated=generated)
    return consensus_for(collated(share), MAJORITY, best, best).reached


def test_without_visible_tests_a_claim_needs_two_thirds_of_the_swarm() -> None:
    assert not _claimed(0.6)  # 3 of 5, backed only by the swarm's own tests
    assert _claimed(2 / 3) and _claimed(0.8)
    assert not _claimed(0.8, generated=(4, 10))  # the generated tests mostly disagree


def test_with_visible_tests_a_claim_needs_them_all_and_two_thirds_of_the_swarm() -> None:
    assert _claimed(2 / 3, visible=(2, 2)) and _claimed(0.8, visible=(1, 1))
    assert not _claimed(0.8, visible=(1, 2))
    # A bare majority is not enough even when every example passes: 3 of 5, or 17 of 30 where the
    # other 13 pass the same examples and behave otherwise.
    assert not _claimed(0.6, visible=(2, 2))
    assert not _claimed(17 / 30, visible=(5, 5))


def test_an_answer_outside_the_majority_claims_nothing() -> None:
    loner = answer("c4", visible=(2, 2))
    assert not consensus_for(collated(0.75), MAJORITY, loner, loner).reached


def test_a_kept_refinement_speaks_for_the_answer_it_improved() -> None:
    best = answer("c1", visible=(1, 2))
    refined = answer("r1", visible=(2, 2), origin=pb.CANDIDATE_ORIGIN_REFINED)
    claim = consensus_for(collated(0.75), MAJORITY, refined, best)
    assert claim.reached and claim.share == 0.75 and claim.confidence == 0.75
    # Judged on the refinement's own visible tests: one that fails some claims nothing.
    failing = answer("r1", visible=(1, 2), origin=pb.CANDIDATE_ORIGIN_REFINED)
    assert not consensus_for(collated(0.75), MAJORITY, failing, best).reached


def test_code_with_no_test_at_all_never_claims_and_prose_keeps_the_collators_verdict() -> None:
    untested = answer(generated=(0, 0), dual=0.0)
    assert not consensus_for(collated(1.0), MAJORITY, untested, untested).reached
    prose = answer(generated=(0, 0), dual=0.0, code="")
    assert consensus_for(collated(1.0), MAJORITY, prose, prose).reached


def test_no_collated_consensus_is_never_made_one_and_the_input_is_not_changed() -> None:
    best = answer(visible=(2, 2))
    split = collated(0.5, reached=False)
    assert not consensus_for(split, MAJORITY, best, best).reached
    agreed = collated(0.75)
    assert not consensus_for(agreed, MAJORITY, answer("c4"), answer("c4")).reached
    assert agreed.reached, "the collator's verdict is copied, never edited"
