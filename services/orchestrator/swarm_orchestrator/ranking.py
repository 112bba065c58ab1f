"""The ranking: which candidate is best, from the evidence the assessor and the collator gathered.

Pure functions of the candidates (no service, no store): the rules and their reasons are in
docs/selection.md ("Ranking"); the formulas themselves are ``swarmlib``'s (``_scoring.py``),
shared with the assessor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from swarm.v1 import orchestrator_pb2 as pb
from swarmlib import cluster_shares, dual_agreement, evidence_score, selection_score, vote_weights


@dataclass(frozen=True)
class Ranking:
    """Candidates best first, each with its selection score, and each one's weighted cluster share."""

    candidates: tuple[pb.Candidate, ...]
    shares: Mapping[str, float]

    @property
    def best(self) -> pb.Candidate:
        return self.candidates[0]


def cluster_keys(candidates: Sequence[pb.Candidate]) -> list[int]:
    """Behaviour cluster of each candidate: equal non-empty signatures, else the collator's cluster.

    The collator's clusters count only when no candidate has a signature: once some programs were
    run on probe inputs, reading alike is weaker evidence than behaving alike.
    """
    keys: dict[str, int] = {}
    result = []
    signatures = any(c.behaviour for c in candidates)
    for index, candidate in enumerate(candidates):
        if candidate.behaviour:
            key = f"b:{candidate.behaviour}"
        elif candidate.cluster_id >= 0 and not signatures:
            key = f"s:{candidate.cluster_id}"
        else:
            key = f"alone:{index}"
        result.append(keys.setdefault(key, len(keys)))
    return result


def selection(candidate: pb.Candidate, share: float) -> float:
    """The candidate's selection score with ``share`` as its cluster's share of the swarm."""
    s = candidate.scores
    evidence = evidence_score(
        dual=s.dual_agreement,
        share=share,
        centrality=s.consensus,
        completeness=s.completeness,
        style=s.style,
    )
    return selection_score(s.tests_passed, s.tests_total, s.correctness >= 1.0, evidence)


def _order(candidate: pb.Candidate) -> tuple[float, int, float]:
    return (-candidate.scores.overall, -candidate.scores.tests_passed, candidate.latency_ms)


def rank(candidates: Sequence[pb.Candidate], reputations: Sequence[float] | None = None) -> Ranking:
    """Score copies of ``candidates`` (assessed and collated) and sort them best first.

    ``reputations`` are the candidates' vote multipliers from their sources' history (1.0 each
    when absent): they weigh agreement, never the visible tests. Ties go to more visible tests
    passed, then to the faster answer; otherwise the input order stands.
    """
    ranked = [_copy(c) for c in candidates]
    for candidate, multiplier in zip(ranked, reputations or [1.0] * len(ranked), strict=True):
        candidate.reputation = multiplier
    clusters = cluster_keys(ranked)
    weights = vote_weights([c.model or c.instance for c in ranked], [c.reputation for c in ranked])
    duals = dual_agreement(clusters, [c.scores.generated_passed for c in ranked], weights)
    shares = cluster_shares(clusters, weights)
    sizes = {key: clusters.count(key) for key in set(clusters)}
    for candidate, key, dual, share in zip(ranked, clusters, duals, shares, strict=True):
        candidate.scores.dual_agreement = dual
        candidate.scores.behaviour_cluster_size = sizes[key]
        candidate.scores.overall = selection(candidate, share)
    by_id = {c.id: share for c, share in zip(ranked, shares, strict=True)}
    ranked.sort(key=_order)
    return Ranking(tuple(ranked), by_id)


def _copy(candidate: pb.Candidate) -> pb.Candidate:
    copy = pb.Candidate()
    copy.CopyFrom(candidate)
    return copy
