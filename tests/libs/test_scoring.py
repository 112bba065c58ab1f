"""The selection formula: visible tests first, then CodeT dual agreement and the rest."""

from __future__ import annotations

from swarmlib import dual_agreement, evidence_score, selection_score


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
