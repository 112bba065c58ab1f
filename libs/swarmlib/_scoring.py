"""The one scoring formula, shared by the assessor (assessment) and orchestrator (ranking).

Assessment score = 0.60 correctness + 0.25 completeness + 0.15 style: executed evidence dominates,
a complete program beats a fragment, style only breaks near-ties.
Ranking score = 0.85 assessment + 0.15 consensus: among equally good programs, prefer the one the
swarm agrees with (the majority is rarely wrong in the same way twice).
"""

from __future__ import annotations

CORRECTNESS_WEIGHT = 0.60
COMPLETENESS_WEIGHT = 0.25
STYLE_WEIGHT = 0.15
CONSENSUS_WEIGHT = 0.15


def assessment_score(correctness: float, completeness: float, style: float) -> float:
    """What the sandbox and static checks say of a program, in [0, 1]."""
    return CORRECTNESS_WEIGHT * correctness + COMPLETENESS_WEIGHT * completeness + STYLE_WEIGHT * style


def ranking_score(assessment: float, consensus: float) -> float:
    """Assessment blended with agreement with the swarm, in [0, 1]."""
    return (1.0 - CONSENSUS_WEIGHT) * assessment + CONSENSUS_WEIGHT * consensus
