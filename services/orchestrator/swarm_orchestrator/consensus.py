"""The consensus claim: whether the swarm's agreement supports the answer the run returns.

The collator says whether most responses agree; the claim stands only for an answer in that
majority that executed evidence backs. Pure functions; the rule and why it is this strict are in
docs/selection.md ("Consensus").
"""

from __future__ import annotations

from collections.abc import Sequence

from swarm.v1 import common_pb2, orchestrator_pb2 as pb

# Without a test the user stated, agreement must be this broad (of the collator's clusters) for a claim.
UNTESTED_CONSENSUS_SHARE = 2 / 3


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
    supported = independently_supported(final if final.scores.tests_total else best, consensus.share)
    if not (in_majority and supported):
        consensus.reached = False
    return consensus


def independently_supported(candidate: pb.Candidate, share: float) -> bool:
    """Executed evidence beyond agreement itself: every visible test passes; with none, the best
    dual agreement, at least half of the generated tests and a cluster of at least two thirds of
    the swarm (``share``, the collator's). Code with no test at all has none; prose keeps the
    collator's verdict."""
    scores = candidate.scores
    if scores.tests_total:
        return scores.tests_passed == scores.tests_total
    if scores.generated_total:
        return (
            scores.dual_agreement >= 1.0
            and 2 * scores.generated_passed >= scores.generated_total
            and share >= UNTESTED_CONSENSUS_SHARE - 1e-9
        )
    return not candidate.code.strip()
