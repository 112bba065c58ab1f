"""Similarity, clusters and consensus over one run's embeddings: pure functions on numpy arrays.

Clustering is average-linkage agglomerative with a similarity cut-off. Connected components over
the threshold graph would chain: with a text embedding model an iterative and a recursive
solution can each sit just above the threshold from some hybrid, and one such bridge would merge
two approaches into a false consensus. Average linkage only merges two groups when their members
agree *on average*, which keeps approaches apart without complete linkage's habit of splitting a
real majority over one outlier pair. Runs hold at most a few dozen candidates, so the naive
O(n³) loop is cheaper than pulling in scipy, and it is deterministic: the best pair wins and ties
go to the lowest indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np
import numpy.typing as npt

FloatMatrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ClusterInfo:
    """One cluster: member indices in request order, its representative and cohesion."""

    members: tuple[int, ...]
    representative: int
    cohesion: float


@dataclass(frozen=True)
class Collation:
    """Everything the response needs, by candidate index; cluster ids are positions in ``clusters``."""

    clusters: tuple[ClusterInfo, ...]
    labels: tuple[int, ...]
    centrality: tuple[float, ...]
    share: float
    reached: bool
    basis: str = "semantic"
    confidence: float = 0.0


def similarity_matrix(embeddings: FloatMatrix) -> FloatMatrix:
    """Full cosine-similarity matrix of L2-normalised rows, via an exact FAISS inner-product index.

    The result is symmetrised and clipped so float noise cannot make a pair's similarity depend on
    which side asked, or exceed the cosine range.
    """
    vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ValueError(f"expected a non-empty 2-D array of embeddings, got shape {vectors.shape}")
    n, dim = vectors.shape
    index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    scores, neighbours = index.search(vectors, n)
    sim = np.zeros((n, n), dtype=np.float32)
    rows = np.repeat(np.arange(n), n)
    sim[rows, neighbours.ravel()] = scores.ravel()
    symmetric: FloatMatrix = np.clip((sim + sim.T) / 2.0, -1.0, 1.0).astype(np.float32)
    np.fill_diagonal(symmetric, 1.0)
    return symmetric


def average_linkage(sim: FloatMatrix, threshold: float) -> list[list[int]]:
    """Groups of indices whose mean cross-similarity stays at or above ``threshold``.

    Agglomerative average linkage with the Lance-Williams update: the group-to-group mean
    similarity matrix is updated in place on each merge, so a run of n responses costs O(n^2)
    per merge instead of recomputing every block mean. Ties go to the lowest pair of indices.
    Each group is sorted; groups come back in order of their first member.
    """
    n = sim.shape[0]
    groups: list[list[int]] = [[i] for i in range(n)]
    linkage = sim.astype(np.float64, copy=True)
    np.fill_diagonal(linkage, -np.inf)
    alive = np.ones(n, dtype=bool)
    while alive.sum() > 1:
        masked = np.where(alive[:, None] & alive[None, :], linkage, -np.inf)
        flat = int(np.argmax(masked))
        a, b = divmod(flat, n)
        if masked[a, b] < threshold:
            break
        a, b = min(a, b), max(a, b)
        size_a, size_b = len(groups[a]), len(groups[b])
        linkage[a, :] = (size_a * linkage[a, :] + size_b * linkage[b, :]) / (size_a + size_b)
        linkage[:, a] = linkage[a, :]
        linkage[a, a] = -np.inf
        groups[a] = sorted(groups[a] + groups[b])
        groups[b] = []
        alive[b] = False
    return sorted((g for g in groups if g), key=lambda g: g[0])


def behaviour_groups(behaviours: list[str]) -> list[list[int]]:
    """Groups of candidates with the same non-empty behaviour signature; the rest stand alone.

    Identical outputs on every shared input is the strongest evidence that two programs are the
    same program (AlphaCode, MBR-exec); a program that could not run shares behaviour with nothing.
    """
    by_signature: dict[str, list[int]] = {}
    groups: list[list[int]] = []
    for index, signature in enumerate(behaviours):
        if not signature:
            groups.append([index])
        elif signature in by_signature:
            by_signature[signature].append(index)
        else:
            by_signature[signature] = [index]
            groups.append(by_signature[signature])
    return sorted(groups, key=lambda g: g[0])


def _mean_off_diagonal(block: FloatMatrix) -> float:
    n = block.shape[0]
    if n < 2:
        return 1.0
    return float((block.sum() - np.trace(block)) / (n * (n - 1)))


def _describe(sim: FloatMatrix, members: list[int]) -> ClusterInfo:
    block = sim[np.ix_(members, members)]
    if len(members) == 1:
        return ClusterInfo(members=(members[0],), representative=members[0], cohesion=1.0)
    # Mean similarity to the *other* members; argmax takes the earliest on ties.
    mean_to_others = (block.sum(axis=1) - 1.0) / (len(members) - 1)
    representative = members[int(np.argmax(mean_to_others))]
    return ClusterInfo(members=tuple(members), representative=representative, cohesion=_mean_off_diagonal(block))


def centrality(sim: FloatMatrix) -> tuple[float, ...]:
    """Each candidate's mean similarity to every other one; 1.0 when it is alone."""
    n = sim.shape[0]
    if n == 1:
        return (1.0,)
    return tuple(float(v) for v in (sim.sum(axis=1) - np.diag(sim)) / (n - 1))


def confidence_of(largest: int, total: int) -> float:
    """Share of the majority, discounted for small swarms: (largest / total) * (1 - 1 / (total + 1)).

    Three of three agreeing is good evidence, thirty of thirty far better; a lone response is 0.
    """
    if total < 2 or largest < 2:
        return 0.0
    return (largest / total) * (1.0 - 1.0 / (total + 1))


def collate(
    embeddings: FloatMatrix, threshold: float, consensus_share: float, behaviours: list[str] | None = None
) -> Collation:
    """Cluster one run and decide consensus.

    With behaviour signatures (any non-empty), clusters are behaviour groups: programs that give
    identical outputs on every probe input; semantics only orders and describes them. Without,
    clusters come from average linkage over the embeddings. Clusters are ordered largest first,
    ties by first appearance, so cluster 0 is the majority. Consensus needs the largest cluster to
    hold more than ``consensus_share`` of the responses (by default a strict majority: half
    against half is a split, not an agreement) *and* at least two of them: a lone response
    agreeing with itself says nothing.
    """
    sim = similarity_matrix(embeddings)
    by_behaviour = behaviours is not None and any(behaviours)
    raw_groups = behaviour_groups(list(behaviours or [])) if by_behaviour else average_linkage(sim, threshold)
    groups = sorted(raw_groups, key=lambda g: (-len(g), g[0]))
    clusters = tuple(_describe(sim, g) for g in groups)
    labels = [0] * sim.shape[0]
    for cluster_id, cluster in enumerate(clusters):
        for member in cluster.members:
            labels[member] = cluster_id
    largest = len(clusters[0].members)
    share = largest / sim.shape[0]
    return Collation(
        clusters=clusters,
        labels=tuple(labels),
        centrality=centrality(sim),
        share=share,
        reached=largest >= 2 and share > consensus_share,
        basis="behaviour" if by_behaviour else "semantic",
        confidence=confidence_of(largest, sim.shape[0]),
    )
