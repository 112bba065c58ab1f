"""The consensus claim: whether the swarm's agreement supports the answer the run returns.

The collator says whether most responses agree; the claim stands only for an answer in that
majority, when the majority holds two thirds of the swarm and executed evidence backs it. Pure
functions; the rule and why it is this strict are in docs/selection.md ("Consensus").
"""

from __future__ import annotations

from collections.abc import Sequence

from swarm.v1 import common_pb2, orchestrator_pb2 as pb

# A claim on code needs agreement this broad (of the collator's clusters), with tests or without.
CONSENSUS_SHARE = 2 / 3


def consensus_for(
    collated: common_pb2.Consensus,
    clusters: Sequence[common_pb2.Cluster],
    final: pb.Candidate,
    best: pb.Candidate,
) -> common_pb2.Consensus:
    """The collator's consensus (``collated``) as it stands for ``final``, the run's answer, when
    ``best`` is the swarm's best-ranked answer (a kept refinement speaks for the answer it improved)."""
    consensus = common_pb2.Consensus()
    consensus.CopyFrom(collated)
    if not consensus.reached:
        return consensus
    majority = next((c for c in clusters if c.id == consensus.majority_cluster_id), None)
    member = best.id if final.origin == pb.CANDIDATE_ORIGIN_REFINED else final.id
    in_majority = majority is not None and member in majority.candidate_ids
    if not (in_majority and supported(final if final.scores.tests_total else best, consensus.share)):
        consensus.reached = False
    return consensus


def supported(candidate: pb.Candidate, share: float) -> bool:
    """Whether agreement over ``share`` of the swarm (the collator's) and executed evidence back
    ``candidate``. Code needs two thirds of the swarm, not a bare majority: the visible tests are
    often one or two examples that a wrong program passes too, and answers of a few models share
    their mistakes. Then every visible test passes, or with none the best dual agreement and at
    least half of the generated tests. Code with no test at all has no support; prose keeps the
    collator's verdict."""
    scores = candidate.scores
    is_code = bool(candidate.code.strip())
    if is_code and share < CONSENSUS_SHARE - 1e-9:
        return False
    if scores.tests_total:
        return scores.tests_passed == scores.tests_total
    if scores.generated_total:
        return scores.dual_agreement >= 1.0 and 2 * scores.generated_passed >= scores.generated_total
    return not is_code
