"""The selection formula: visible tests first, then CodeT dual agreement and the rest."""

from __future__ import annotations

import pytest

from swarmlib import (
    cluster_shares,
    dual_agreement,
    evidence_score,
    reputation_mean,
    reputation_multiplier,
    selection_score,
    vote_weights,
)


def test_one_more_visible_test_beats_any_other_evidence() -> None:
    strong_evidence = selection_score(2, 3, True, evidence_score(1.0, 1.0, 1.0, 1.0, 1.0))
    weak_evidence = selection_score(3, 3, True, evidence_score(0.0, 0.0, 0.0, 0.0, 0.0))
    assert weak_evidence >= strong_evidence
    assert 0.0 <= strong_evidence <= 1.0 and 0.0 <= weak_evidence <= 1.0


def test_evidence_decides_between_equal_visible_results() -> None:
    majority = selection_score(3, 3, True, evidence_score(1.0, 0.8, 0.9, 1.0, 0.8))
    outlier = selection_score(3, 3, True, evidence_score(0.1, 0.1, 0.5, 1.0, 1.0))
    assert majority > outlier


def test_without_visible_tests_running_cleanly_dominates() -> None:
    assert selection_score(0, 0, True, 0.0) > selection_score(0, 0, False, 1.0) - 1e-12


def test_dual_agreement_is_cluster_size_times_tests_passed_normalised() -> None:
    # clusters: 0 = three programs passing 2 tests (6); 1 = one program passing 5 (5); 2 = passes none.
    scores = dual_agreement([0, 0, 1, 0, 2], [2, 2, 5, 2, 0])
    assert scores == [1.0, 1.0, 5 / 6, 1.0, 0.0]
    assert dual_agreement([0, 1], [0, 0]) == [0.0, 0.0]


def test_one_models_answers_vote_as_sqrt_of_their_number() -> None:
    weights = vote_weights(["a", "a", "a", "a", "b"])
    assert weights[:4] == [0.5] * 4
    assert weights[4] == 1.0
    # Four samples of one model agreeing count 2 votes; the one other model's answer counts 1.
    shares = cluster_shares([0, 0, 0, 0, 1], weights)
    assert shares[0] == pytest.approx(2 / 3)
    assert shares[4] == pytest.approx(1 / 3)


def test_agreement_across_models_outweighs_the_same_count_from_one_model() -> None:
    models = ["x", "x", "x", "y", "y", "z"]
    assert vote_weights(["x", "x", "y", "y"]) == [1.0] * 4
    clusters = [0, 0, 0, 1, 1, 1]
    shares = cluster_shares(clusters, vote_weights(models))
    assert shares[3] > shares[0]
    duals = dual_agreement(clusters, [2] * 6, vote_weights(models))
    assert duals[3] == 1.0
    assert duals[0] < 1.0


def test_one_model_swarm_keeps_plain_cluster_sizes() -> None:
    clusters = [0, 0, 1, 2, 2, 2]
    shares = cluster_shares(clusters, vote_weights(["qwen"] * 6))
    assert shares == pytest.approx([2 / 6, 2 / 6, 1 / 6, 3 / 6, 3 / 6, 3 / 6])
    assert dual_agreement(clusters, [1, 1, 3, 1, 1, 1], vote_weights(["qwen"] * 6)) == dual_agreement(
        clusters, [1, 1, 3, 1, 1, 1]
    )


def test_reputation_is_neutral_without_history_and_bounded() -> None:
    assert reputation_multiplier(0, 0) == 1.0
    assert reputation_mean(0, 0) == 0.5
    assert 1.0 < reputation_multiplier(1, 0) < reputation_multiplier(10, 0) < 1.5
    assert 0.5 < reputation_multiplier(0, 10) < reputation_multiplier(0, 1) < 1.0
    # Beta(2, 2): one observation moves the vote by a tenth, not a third.
    assert reputation_multiplier(1, 0) == pytest.approx(1.1)
    assert reputation_multiplier(3, 3) == pytest.approx(1.0)


def test_vote_weights_without_history_are_unchanged() -> None:
    models = ["a", "a", "b"]
    assert vote_weights(models, [1.0, 1.0, 1.0]) == vote_weights(models)
    assert vote_weights(["a", "b"], [1.2, 1.2]) == [1.0, 1.0]  # equal priors change no share
    assert vote_weights(["a", "b"], [1.2, 0.8]) == [1.2, 0.8]
    with pytest.raises(ValueError, match="2 multipliers for 3 candidates"):
        vote_weights(models, [1.0, 1.0])


def test_reputation_moves_the_shares_of_equal_clusters() -> None:
    neutral = cluster_shares([0, 1], vote_weights(["a", "b"]))
    assert neutral == [0.5, 0.5]
    trusted_b = cluster_shares(
        [0, 1], vote_weights(["a", "b"], [reputation_multiplier(0, 2), reputation_multiplier(4, 0)])
    )
    assert trusted_b[1] > 0.5 > trusted_b[0]
