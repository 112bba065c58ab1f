"""The scoring formulas, shared by the assessor (assessment) and the orchestrator (ranking).

One place for the numbers, so the score a refinement must match and the score the ranking sorts
by cannot drift apart between services. What each term means and why the weights are these:
docs/selection.md ("Ranking", "Reputation").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

CORRECTNESS_WEIGHT = 0.60
COMPLETENESS_WEIGHT = 0.25
STYLE_WEIGHT = 0.15


def assessment_score(correctness: float, completeness: float, style: float) -> float:
    """What the sandbox and static checks say of a program, in [0, 1]."""
    return CORRECTNESS_WEIGHT * correctness + COMPLETENESS_WEIGHT * completeness + STYLE_WEIGHT * style


EVIDENCE_WEIGHTS = {"dual": 0.45, "share": 0.25, "centrality": 0.10, "completeness": 0.10, "style": 0.10}


def evidence_score(dual: float, share: float, centrality: float, completeness: float, style: float) -> float:
    """Everything but the visible tests, in [0, 1]."""
    w = EVIDENCE_WEIGHTS
    return (
        w["dual"] * dual
        + w["share"] * share
        + w["centrality"] * centrality
        + w["completeness"] * completeness
        + w["style"] * style
    )


def selection_score(visible_passed: int, visible_total: int, runs_cleanly: bool, evidence: float) -> float:
    """The ranking score in [0, 1]; lexicographic in visible tests passed, then evidence."""
    if visible_total == 0:
        return (float(runs_cleanly) + evidence) / 2.0
    return (visible_passed + evidence) / (visible_total + 1)


REPUTATION_PRIOR = 2.0
"""Pseudo-counts of success and of failure before any evidence: Beta(2, 2), centred on 0.5."""

REPUTATION_SIGNAL_WEIGHTS = {
    "visible_tests": 1.0,
    "generated_tests": 0.5,
    "agreement": 1.0,
    "preferred": 2.0,
    "rating": 2.0,
    "approval": 2.0,
}
"""How much one observation of each kind counts. What a person says of an answer (a preference,
a rating, an approval) counts double what the machine infers, because it is rarer and it is
the judgement the swarm tries to predict. The swarm's own generated tests count half: they share
the swarm's mistakes."""


def reputation_mean(successes: float, failures: float) -> float:
    """Posterior mean of "this source's answer is good" under the Beta(REPUTATION_PRIOR, REPUTATION_PRIOR) prior."""
    return (REPUTATION_PRIOR + successes) / (2.0 * REPUTATION_PRIOR + successes + failures)


def reputation_multiplier(successes: float, failures: float) -> float:
    """Vote multiplier in (0.5, 1.5) from a source's evidence; exactly 1.0 without any.

    Linear in the posterior mean so that the prior is easy to reason about: a source whose answers
    were judged good three times out of four gets about 1.17 after a dozen observations.
    """
    if successes == 0 and failures == 0:
        return 1.0
    return 1.0 + (reputation_mean(successes, failures) - 0.5)


def vote_weights(models: Sequence[str], multipliers: Sequence[float] | None = None) -> list[float]:
    """How much each candidate's agreement counts: ``1 / sqrt(n)`` for a model with ``n`` answers in the run,
    times the candidate's reputation multiplier (``reputation_multiplier``; 1.0 without history).

    Samples of one model share its mistakes, so ten of them agreeing is weaker evidence than ten
    different models agreeing; a model's answers together count ``sqrt(n)`` votes. When every
    answer comes from one model (the usual swarm of one model's instances) all weights are equal
    and shares are plain cluster sizes. Shares are ratios of weights, so multipliers that are all
    equal change nothing; they are then dropped to keep the weights, and ties, exact.
    """
    if multipliers is not None and len(multipliers) != len(models):
        raise ValueError(f"{len(multipliers)} multipliers for {len(models)} candidates")
    counts = Counter(models)
    if len(set(counts.values())) <= 1:
        # Equal counts give equal weights; exactly 1.0 keeps ties between clusters exact.
        base = [1.0] * len(models)
    else:
        base = [1.0 / math.sqrt(counts[model]) for model in models]
    if multipliers is None or len(set(multipliers)) <= 1:
        return base
    return [weight * multiplier for weight, multiplier in zip(base, multipliers, strict=True)]


def cluster_shares(cluster_of: Sequence[int], weights: Sequence[float]) -> list[float]:
    """Each candidate's cluster's share of the run's total vote weight (see ``vote_weights``)."""
    total = sum(weights)
    if total <= 0:
        return [0.0] * len(cluster_of)
    votes: dict[int, float] = {}
    for cluster, weight in zip(cluster_of, weights, strict=True):
        votes[cluster] = votes.get(cluster, 0.0) + weight
    return [votes[cluster] / total for cluster in cluster_of]


def dual_agreement(
    cluster_of: Sequence[int], generated_passed: Sequence[int], weights: Sequence[float] | None = None
) -> list[float]:
    """CodeT's dual agreement per candidate, normalised to the run's best (0 with no generated tests).

    ``cluster_of[i]`` is candidate i's behaviour cluster; a cluster's score is its size (its vote
    weight, with ``weights``) times the generated tests its programs pass (equal behaviour means
    equal outcomes, so take the max).
    """
    sizes: dict[int, float] = {}
    passed: dict[int, int] = {}
    for index, (cluster, count) in enumerate(zip(cluster_of, generated_passed, strict=True)):
        sizes[cluster] = sizes.get(cluster, 0.0) + (weights[index] if weights is not None else 1.0)
        passed[cluster] = max(passed.get(cluster, 0), count)
    raw = {c: sizes[c] * passed[c] for c in sizes}
    best = max(raw.values(), default=0)
    if best == 0:
        return [0.0] * len(cluster_of)
    return [raw[c] / best for c in cluster_of]
