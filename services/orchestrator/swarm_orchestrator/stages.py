"""The downstream services as four plain calls, and the assessment and collation stages over them.

``StageCalls`` is the run's one seam to the collator, the assessor and the refiner: over gRPC in
the service (``over_channels``), plain async functions returning canned responses in unit tests
(the way httpx's ``MockTransport`` stands in for a transport), so a whole run, the ranking and
refinement's keep-or-drop rule run without any server. Each stage here returns a value and
decides itself what a failed call means: an assessment that fails ends the run, a collation that
fails only costs the consensus.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from swarm.v1 import (
    assessor_pb2,
    assessor_pb2_grpc,
    collator_pb2,
    collator_pb2_grpc,
    common_pb2,
    orchestrator_pb2 as pb,
    refiner_pb2,
    refiner_pb2_grpc,
)
from swarmlib import StageError

log = logging.getLogger(__name__)

Collate = Callable[[collator_pb2.CollateRequest, float], Awaitable[collator_pb2.CollateResponse]]
Assess = Callable[[assessor_pb2.AssessRequest, float], Awaitable[assessor_pb2.AssessResponse]]
EvaluateGates = Callable[[assessor_pb2.EvaluateGatesRequest, float], Awaitable[assessor_pb2.EvaluateGatesResponse]]
Refine = Callable[[refiner_pb2.RefineRequest, float], Awaitable[refiner_pb2.RefineResponse]]


@dataclass(frozen=True)
class StageCalls:
    """One call per downstream RPC, each ``(request, timeout_s) -> response``; failures raise
    ``grpc.aio.AioRpcError`` as a real channel does."""

    collate: Collate
    assess: Assess
    evaluate_gates: EvaluateGates
    refine: Refine

    @classmethod
    def over_channels(
        cls, collator: grpc.aio.Channel, assessor: grpc.aio.Channel, refiner: grpc.aio.Channel
    ) -> StageCalls:
        collator_stub = collator_pb2_grpc.CollatorServiceStub(collator)
        assessor_stub = assessor_pb2_grpc.AssessorServiceStub(assessor)
        refiner_stub = refiner_pb2_grpc.RefinerServiceStub(refiner)

        async def collate(request: collator_pb2.CollateRequest, timeout: float) -> collator_pb2.CollateResponse:
            response: collator_pb2.CollateResponse = await collator_stub.Collate(request, timeout=timeout)
            return response

        async def assess(request: assessor_pb2.AssessRequest, timeout: float) -> assessor_pb2.AssessResponse:
            response: assessor_pb2.AssessResponse = await assessor_stub.Assess(request, timeout=timeout)
            return response

        async def evaluate_gates(
            request: assessor_pb2.EvaluateGatesRequest, timeout: float
        ) -> assessor_pb2.EvaluateGatesResponse:
            response: assessor_pb2.EvaluateGatesResponse = await assessor_stub.EvaluateGates(request, timeout=timeout)
            return response

        async def refine(request: refiner_pb2.RefineRequest, timeout: float) -> refiner_pb2.RefineResponse:
            response: refiner_pb2.RefineResponse = await refiner_stub.Refine(request, timeout=timeout)
            return response

        return cls(collate=collate, assess=assess, evaluate_gates=evaluate_gates, refine=refine)


def rpc_failure(exc: grpc.aio.AioRpcError) -> str:
    """A failed call in words: its status code and the server's message."""
    return f"{exc.code().name}: {exc.details()}"


def code_of(candidate: pb.Candidate) -> common_pb2.CandidateCode:
    """What another service needs of a candidate: its reply, its program, its behaviour signature."""
    return common_pb2.CandidateCode(
        id=candidate.id, text=candidate.text, code=candidate.code, behaviour=candidate.behaviour
    )


# -- assessment ---------------------------------------------------------------------------------


def assess_request(
    run_id: str,
    task: str,
    candidates: Sequence[pb.Candidate],
    generated: Sequence[str] = (),
    attached: Sequence[str] = (),
) -> assessor_pb2.AssessRequest:
    """Everything the assessor runs: the candidates, the swarm's raw tests and the caller's."""
    return assessor_pb2.AssessRequest(
        run_id=run_id,
        task=task,
        candidates=[code_of(c) for c in candidates],
        generated_tests=generated,
        attached_tests=attached,
    )


async def assess(
    calls: StageCalls, request: assessor_pb2.AssessRequest, timeout_s: float
) -> assessor_pb2.AssessResponse:
    """The assessor's verdict on every candidate of ``request``; ``StageError`` when there is none,
    since a run cannot rank what was never run."""
    try:
        response = await calls.assess(request, timeout_s)
    except grpc.aio.AioRpcError as exc:
        raise StageError(f"assessment failed: {rpc_failure(exc)}") from exc
    missing = {c.id for c in request.candidates} - {a.candidate_id for a in response.assessments}
    if missing:
        raise StageError(f"assessment failed: the assessor returned nothing for {sorted(missing)}")
    return response


def assessed(candidate: pb.Candidate, assessment: assessor_pb2.Assessment, probed: bool) -> pb.Candidate:
    """A copy of ``candidate`` with its assessment; the behaviour signature only when probe inputs
    existed (with none, every program "behaves" alike, which says nothing)."""
    result = pb.Candidate()
    result.CopyFrom(candidate)
    result.scores.CopyFrom(assessment.scores)
    result.tests.extend(assessment.tests)
    result.error = assessment.error
    result.limit = assessment.limit
    result.behaviour = assessment.behaviour if probed else ""
    return result


# -- collation ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Collation:
    """What the collator found: clusters, its consensus, how answers differ, and each candidate's
    centrality and cluster; empty but for ``analysis`` (saying why) when collation failed."""

    consensus: common_pb2.Consensus = field(default_factory=common_pb2.Consensus)
    clusters: tuple[common_pb2.Cluster, ...] = ()
    analysis: str = ""
    similarities: Mapping[str, collator_pb2.CandidateSimilarity] = field(default_factory=dict)


async def collate(calls: StageCalls, run_id: str, candidates: Sequence[pb.Candidate], timeout_s: float) -> Collation:
    """Clusters and consensus of ``candidates``; a collator outage degrades the run (ranked without
    consensus) instead of failing it."""
    request = collator_pb2.CollateRequest(run_id=run_id, candidates=[code_of(c) for c in candidates])
    try:
        response = await calls.collate(request, timeout_s)
    except grpc.aio.AioRpcError as exc:
        log.warning("run %s: collation unavailable: %s", run_id, exc.details())
        return Collation(analysis=f"collation unavailable ({rpc_failure(exc)}); ranked without consensus")
    ids = sorted(c.id for c in candidates)
    if sorted(s.candidate_id for s in response.similarities) != ids:
        analysis = "collation unusable (not every candidate was described); ranked without consensus"
        log.warning("run %s: %s", run_id, analysis)
        return Collation(analysis=analysis)
    return Collation(
        consensus=response.consensus,
        clusters=tuple(response.clusters),
        analysis=response.analysis,
        similarities={s.candidate_id: s for s in response.similarities},
    )


def collated(candidate: pb.Candidate, collation: Collation) -> pb.Candidate:
    """A copy of ``candidate`` with its centrality and cluster (unchanged when collation failed)."""
    result = pb.Candidate()
    result.CopyFrom(candidate)
    similarity = collation.similarities.get(candidate.id)
    if similarity is not None:
        result.scores.consensus = similarity.centrality
        result.cluster_id = similarity.cluster_id
    return result
