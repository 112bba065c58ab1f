"""Behaviour-first clustering and the fast average linkage."""

from __future__ import annotations

import numpy as np

from swarm_collator.clustering import average_linkage, behaviour_groups, collate, confidence_of


def _naive_average_linkage(sim: np.ndarray, threshold: float) -> list[list[int]]:
    groups: list[list[int]] = [[i] for i in range(sim.shape[0])]
    while len(groups) > 1:
        best: tuple[float, int, int] | None = None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                score = float(sim[np.ix_(groups[a], groups[b])].mean())
                if score >= threshold and (best is None or score > best[0]):
                    best = (score, a, b)
        if best is None:
            break
        _, a, b = best
        groups[a] = sorted(groups[a] + groups[b])
        del groups[b]
    return sorted(groups, key=lambda g: g[0])


def test_lance_williams_linkage_matches_the_definition() -> None:
    rng = np.random.default_rng(7)
    for n in (2, 5, 12, 30):
        vectors = rng.normal(size=(n, 8)).astype(np.float32)
        vectors[n // 2 :] += 3.0  # two loose families
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        sim = np.clip(vectors @ vectors.T, -1, 1).astype(np.float32)
        for threshold in (0.2, 0.5, 0.8):
            assert average_linkage(sim, threshold) == _naive_average_linkage(sim, threshold)


def test_behaviour_groups_join_equal_signatures_and_isolate_crashes() -> None:
    assert behaviour_groups(["a", "b", "a", "", "", "b", "a"]) == [[0, 2, 6], [1, 5], [3], [4]]


def test_behaviour_decides_clusters_when_signatures_exist() -> None:
    # Embeddings say all four are the same; behaviour says 3 + 1.
    embeddings = np.ones((4, 3), dtype=np.float32) / np.sqrt(3)
    collation = collate(embeddings, 0.9, 0.5, ["x", "x", "y", "x"])
    assert collation.basis == "behaviour"
    assert [c.members for c in collation.clusters] == [(0, 1, 3), (2,)]
    assert collation.reached and collation.share == 0.75
    assert collation.confidence == confidence_of(3, 4)
    semantic = collate(embeddings, 0.9, 0.5, ["", "", "", ""])
    assert semantic.basis == "semantic" and len(semantic.clusters) == 1


def test_confidence_grows_with_swarm_size_and_is_zero_alone() -> None:
    assert confidence_of(1, 1) == 0.0
    assert 0 < confidence_of(3, 3) < confidence_of(30, 30) < 1
    assert confidence_of(2, 4) < confidence_of(3, 4)
