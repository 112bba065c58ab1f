"""Clustering on synthetic unit vectors: no model needed."""

from __future__ import annotations

import numpy as np
import pytest

from swarm_collator.clustering import FloatMatrix, average_linkage, centrality, collate, similarity_matrix


def unit(*rows: list[float]) -> FloatMatrix:
    matrix = np.asarray(rows, dtype=np.float32)
    normalised: FloatMatrix = (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)
    return normalised


def at_angle(degrees: float) -> list[float]:
    """A 2-D unit vector; the cosine between two of them is the cosine of the angle between."""
    radians = np.deg2rad(degrees)
    return [float(np.cos(radians)), float(np.sin(radians))]


def test_similarity_matrix_is_the_cosine_matrix() -> None:
    vectors = unit([1, 0, 0], [0, 1, 0], [1, 1, 0])
    sim = similarity_matrix(vectors)
    np.testing.assert_allclose(sim, vectors @ vectors.T, atol=1e-6)
    np.testing.assert_array_equal(np.diag(sim), np.ones(3, dtype=np.float32))
    np.testing.assert_array_equal(sim, sim.T)


def test_similarity_matrix_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        similarity_matrix(np.zeros((0, 4), dtype=np.float32))


def test_two_groups_largest_first_with_members_in_request_order() -> None:
    # Indices 0 and 3 form the small group; 1, 2, 4 the large one.
    vectors = unit(at_angle(90), at_angle(0), at_angle(3), at_angle(92), at_angle(5))
    result = collate(vectors, threshold=0.9, consensus_share=0.5)
    assert [c.members for c in result.clusters] == [(1, 2, 4), (0, 3)]
    assert result.labels == (1, 0, 0, 1, 0)
    assert result.share == pytest.approx(0.6)
    assert result.reached


def test_equal_sizes_are_ordered_by_first_appearance() -> None:
    vectors = unit(at_angle(90), at_angle(0), at_angle(91), at_angle(1))
    result = collate(vectors, threshold=0.9, consensus_share=0.5)
    assert [c.members for c in result.clusters] == [(0, 2), (1, 3)]
    # 2 of 4 against 2 of 4 is a split, not a majority: no consensus.
    assert result.share == 0.5
    assert not result.reached
    three_of_five = collate(unit(at_angle(90), at_angle(0), at_angle(91), at_angle(1), at_angle(2)), 0.9, 0.5)
    assert three_of_five.reached


def test_average_linkage_does_not_chain_through_a_bridge() -> None:
    # 0-1 and 1-2 are at 20°, cos 0.94 >= 0.9, but 0-2 at 40° (cos 0.77): connected components
    # would make one cluster; average linkage keeps the far end apart.
    vectors = unit(at_angle(0), at_angle(20), at_angle(40))
    groups = average_linkage(similarity_matrix(vectors), threshold=0.9)
    assert groups == [[0, 1], [2]]


def test_representative_is_the_most_central_member() -> None:
    vectors = unit(at_angle(0), at_angle(10), at_angle(5))
    result = collate(vectors, threshold=0.9, consensus_share=0.5)
    assert len(result.clusters) == 1
    assert result.clusters[0].representative == 2
    expected = (np.cos(np.deg2rad(10)) + 2 * np.cos(np.deg2rad(5))) / 3
    assert result.clusters[0].cohesion == pytest.approx(expected, abs=1e-5)


def test_singletons_have_cohesion_one_and_no_consensus() -> None:
    vectors = unit([1, 0, 0], [0, 1, 0], [0, 0, 1])
    result = collate(vectors, threshold=0.9, consensus_share=0.3)
    assert [c.members for c in result.clusters] == [(0,), (1,), (2,)]
    assert all(c.cohesion == 1.0 and c.representative == c.members[0] for c in result.clusters)
    # Share 1/3 clears 0.3, but a lone response is not a consensus.
    assert not result.reached
    assert result.centrality == pytest.approx((0.0, 0.0, 0.0), abs=1e-6)


def test_single_candidate() -> None:
    result = collate(unit([0.3, 0.4]), threshold=0.9, consensus_share=0.5)
    assert result.clusters[0].members == (0,)
    assert result.centrality == (1.0,)
    assert result.share == 1.0
    assert not result.reached


def test_centrality_is_mean_similarity_to_the_others() -> None:
    sim = np.array([[1.0, 0.5, 0.1], [0.5, 1.0, 0.3], [0.1, 0.3, 1.0]], dtype=np.float32)
    assert centrality(sim) == pytest.approx((0.3, 0.4, 0.2))


def test_deterministic_on_identical_vectors() -> None:
    vectors = unit([1, 0], [1, 0], [0, 1], [0, 1], [1, 0])
    first = collate(vectors, threshold=0.9, consensus_share=0.5)
    second = collate(vectors.copy(), threshold=0.9, consensus_share=0.5)
    assert first == second
    assert first.clusters[0].members == (0, 1, 4)
    assert first.clusters[0].representative == 0
