"""The quality gates' stage: the assessor's verdict on the run's answer, and what it makes of the run.

Why a run was held, failed or used is decided here (``verdict``) from the assessor's
``GateDecision``; the rules themselves live in the assessor (docs/quality-gates.md).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from swarm.v1 import assessor_pb2, common_pb2, orchestrator_pb2 as pb

from .stages import StageCalls, rpc_failure

log = logging.getLogger(__name__)
GATES_ACTOR = "swarm-gates"


def subject(candidate: pb.Candidate) -> assessor_pb2.GateCandidate:
    """What the gates look at of one candidate."""
    return assessor_pb2.GateCandidate(
        candidate_id=candidate.id,
        scores=candidate.scores,
        tests=candidate.tests,
        error=candidate.error,
        limit=candidate.limit,
    )


async def decide(
    calls: StageCalls,
    run_id: str,
    final: pb.Candidate,
    others: Sequence[pb.Candidate],
    consensus: common_pb2.Consensus,
    timeout_s: float,
) -> common_pb2.GateDecision:
    """The gates' verdict on ``final`` as the run's answer; NEEDS_APPROVAL when it cannot be had."""
    request = assessor_pb2.EvaluateGatesRequest(
        run_id=run_id, final=subject(final), others=[subject(c) for c in others], consensus=consensus
    )
    try:
        response = await calls.evaluate_gates(request, timeout_s)
    except grpc.aio.AioRpcError as exc:
        log.warning("run %s: gate evaluation failed: %s", run_id, exc.details())
        return unavailable(exc)
    decision: common_pb2.GateDecision = response.decision
    return decision


def unavailable(exc: grpc.aio.AioRpcError) -> common_pb2.GateDecision:
    """Without a verdict the answer waits for a person: a gate that cannot be checked is not passed."""
    detail = f"gate evaluation failed: {rpc_failure(exc)}"
    rule = common_pb2.GateRuleResult(
        name="gates_evaluated",
        kind="gates_evaluated",
        passed=False,
        on_fail=common_pb2.GATE_OUTCOME_NEEDS_APPROVAL,
        detail=detail,
    )
    return common_pb2.GateDecision(
        outcome=common_pb2.GATE_OUTCOME_NEEDS_APPROVAL,
        rules=[rule],
        deciding_rules=[rule.name],
        summary=f"needs approval: gates_evaluated ({detail})",
    )


@dataclass(frozen=True)
class Verdict:
    """How a run with an answer ends: its status, the error when failed, the hold when held."""

    status: pb.RunStatus
    error: str = ""
    held: pb.AuditEntry | None = None


def verdict(decision: common_pb2.GateDecision, now: dt.datetime) -> Verdict:
    """The run's end as the gates decide: used (PASS), held for an approver (NEEDS_APPROVAL, with
    the gates' summary in the audit trail), or failed with the answer kept on record (FAIL)."""
    if decision.outcome == common_pb2.GATE_OUTCOME_FAIL:
        return Verdict(pb.RUN_STATUS_FAILED, error=f"the quality gates failed the answer: {decision.summary}")
    if decision.outcome == common_pb2.GATE_OUTCOME_NEEDS_APPROVAL:
        held = pb.AuditEntry(actor=GATES_ACTOR, action=pb.AUDIT_ACTION_HELD, comment=decision.summary)
        held.time.FromDatetime(now)
        return Verdict(pb.RUN_STATUS_NEEDS_APPROVAL, held=held)
    return Verdict(pb.RUN_STATUS_SUCCEEDED)
