"""The ranking as a pure function of the candidates' evidence: no service, no store."""

from __future__ import annotations

import pytest

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarm_orchestrator.ranking import cluster_keys, rank, selection
from swarmlib import evidence_score, selection_score


def candidate(
    cid: str,
    *,
    visible: tuple[int, int] = (0, 0),
    generated: tuple[int, int] = (0, 0),
    behaviour: str = "",
    cluster_id: int = -1,
    model: str = "m",
    latency_ms: float = 100.0,
    correctness: float = 1.0,
    completeness: float = 1.0,
    style: float = 1.0,
    centrality: float = 0.5,
) -> pb.Candidate:
    scores = common_pb2.Scores(
        tests_passed=visible[0],
        tests_total=visible[1],
        generated_passed=generated[0],
        generated_total=generated[1],
        correctness=correctness,
        completeness=completeness,
        style=style,
        consensus=centrality,
    )
    return pb.Candidate(
        id=cid,
        origin=pb.CANDIDATE_ORIGIN_SWARM,
        instance=f"i-{cid}",
        model=model,
        code=f"def f():\n    return {cid!r}\n",
        scores=scores,
        behaviour=behaviour,
        cluster_id=cluster_id,
        latency_ms=latency_ms,
    )


def ids(candidates: tuple[pb.Candidate, ...]) -> list[str]:
    return [c.id for c in candidates]


def test_one_more_visible_test_outranks_any_agreement() -> None:
    lonely = candidate("c1", visible=(3, 3), behaviour="A", generated=(0, 10), centrality=0.0, style=0.0)
    crowd = [candidate(f"c{i}", visible=(2, 3), behaviour="B", generated=(10, 10)) for i in (2, 3, 4, 5)]
    ranking = rank([*crowd, lonely])
    assert ranking.best.id == "c1"
    assert ranking.best.scores.overall > max(c.scores.overall for c in ranking.candidates[1:])


def test_agreement_decides_between_equal_visible_results() -> None:
    ranking = rank(
        [
            candidate("c1", visible=(1, 2), behaviour="A"),
            candidate("c2", visible=(1, 2), behaviour="B"),
            candidate("c3", visible=(1, 2), behaviour="B"),
        ]
    )
    assert ids(ranking.candidates)[0] in ("c2", "c3")
    assert ranking.shares == pytest.approx({"c1": 1 / 3, "c2": 2 / 3, "c3": 2 / 3})
    sizes = {c.id: c.scores.behaviour_cluster_size for c in ranking.candidates}
    assert sizes == {"c1": 1, "c2": 2, "c3": 2}


def test_the_overall_is_the_selection_formula_of_the_evidence() -> None:
    ranking = rank([candidate("c1", visible=(1, 2), behaviour="A", generated=(4, 8)), candidate("c2", behaviour="B")])
    c1 = next(c for c in ranking.candidates if c.id == "c1")
    evidence = evidence_score(dual=1.0, share=0.5, centrality=0.5, completeness=1.0, style=1.0)
    assert c1.scores.dual_agreement == 1.0
    assert c1.scores.overall == pytest.approx(selection_score(1, 2, True, evidence))
    assert selection(c1, 0.5) == pytest.approx(c1.scores.overall)


def test_samples_of_one_model_count_sqrt_n_votes_together() -> None:
    """Four samples of model x agree on A; one answer each of y and z agree on B: B's share is
    2 of 4 votes (sqrt(4) for x, 1 each for y and z), not 2 of 6 answers."""
    same_model = [candidate(f"c{i}", behaviour="A", model="x") for i in range(1, 5)]
    others = [candidate("c5", behaviour="B", model="y"), candidate("c6", behaviour="B", model="z")]
    ranking = rank([*same_model, *others])
    assert ranking.shares["c5"] == pytest.approx(0.5) and ranking.shares["c1"] == pytest.approx(0.5)


def test_ties_go_to_more_visible_tests_passed_then_the_faster_answer_then_input_order() -> None:
    slow = candidate("c1", latency_ms=900.0, behaviour="A")
    fast = candidate("c2", latency_ms=100.0, behaviour="B")
    same = candidate("c3", latency_ms=100.0, behaviour="C")
    assert ids(rank([slow, fast, same]).candidates) == ["c2", "c3", "c1"]


def test_reputation_weighs_agreement_never_the_visible_tests() -> None:
    trusted = candidate("c1", visible=(1, 2), behaviour="A")
    doubted = candidate("c2", visible=(1, 2), behaviour="B")
    assert rank([trusted, doubted], [1.4, 0.6]).best.id == "c1"
    assert rank([trusted, doubted], [0.6, 1.4]).best.id == "c2"
    passing = candidate("c3", visible=(2, 2), behaviour="C")
    ranking = rank([trusted, passing], [1.49, 0.51])
    assert ranking.best.id == "c3" and [c.reputation for c in ranking.candidates] == [0.51, 1.49]


def test_rank_scores_copies_and_leaves_its_input_alone() -> None:
    original = candidate("c1", behaviour="A")
    ranked = rank([original]).best
    assert ranked.scores.overall > 0 and ranked.reputation == 1.0
    assert original.scores.overall == 0 and original.reputation == 0


def test_behaviour_signatures_decide_clusters_and_the_collators_only_without_any() -> None:
    with_signatures = [
        candidate("c1", behaviour="A", cluster_id=0),
        candidate("c2", behaviour="A", cluster_id=1),
        candidate("c3", cluster_id=0),  # no signature (it did not run): on its own
    ]
    assert cluster_keys(with_signatures) == [0, 0, 1]
    semantic = [candidate("c1", cluster_id=0), candidate("c2", cluster_id=0), candidate("c3", cluster_id=-1)]
    assert cluster_keys(semantic) == [0, 0, 1]
