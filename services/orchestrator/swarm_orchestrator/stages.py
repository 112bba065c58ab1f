"""The downstream services as four plain calls, and the assessment and collation stages over them.

``StageCalls`` is the run's one seam to the collator, the assessor and the refiner: over gRPC in
the service (``over_channels``), plain async functions returning canned responses in unit tests
(the way httpx's ``MockTransport`` stands in for a transport), so a whole run, the ranking and
refinement's keep-or-drop rule run without any server. Each stage here returns a value and
decides itself what a failed call means: an assessment that fails ends the run, a collation that
fails only costs the consensus.

A stage that is briefly gone or full is not yet a failure: ``StageCalls.retrying`` calls it again
with capped, jittered exponential backoff until the call's deadline (``StageRetry``); over
channels every call also waits for a connection that is being re-established
(``wait_for_ready``). Why every stage call may be repeated, and what a run waits at most:
docs/reliability.md ("Stage retries").
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

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

Req = TypeVar("Req")
Resp = TypeVar("Resp")
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

        # wait_for_ready: a channel whose stage restarted waits (within the deadline) for the new
        # connection instead of failing at once while it reconnects.
        async def collate(request: collator_pb2.CollateRequest, timeout: float) -> collator_pb2.CollateResponse:
            response: collator_pb2.CollateResponse = await collator_stub.Collate(
                request, timeout=timeout, wait_for_ready=True
            )
            return response

        async def assess(request: assessor_pb2.AssessRequest, timeout: float) -> assessor_pb2.AssessResponse:
            response: assessor_pb2.AssessResponse = await assessor_stub.Assess(
                request, timeout=timeout, wait_for_ready=True
            )
            return response

        async def evaluate_gates(
            request: assessor_pb2.EvaluateGatesRequest, timeout: float
        ) -> assessor_pb2.EvaluateGatesResponse:
            response: assessor_pb2.EvaluateGatesResponse = await assessor_stub.EvaluateGates(
                request, timeout=timeout, wait_for_ready=True
            )
            return response

        async def refine(request: refiner_pb2.RefineRequest, timeout: float) -> refiner_pb2.RefineResponse:
            response: refiner_pb2.RefineResponse = await refiner_stub.Refine(
                request, timeout=timeout, wait_for_ready=True
            )
            return response

        return cls(collate=collate, assess=assess, evaluate_gates=evaluate_gates, refine=refine)

    def retrying(self, policy: StageRetry) -> StageCalls:
        """The same calls, each retried by ``policy`` while its stage is gone or full."""
        return StageCalls(
            collate=policy.wrap(self.collate, "Collate"),
            assess=policy.wrap(self.assess, "Assess"),
            evaluate_gates=policy.wrap(self.evaluate_gates, "EvaluateGates"),
            refine=policy.wrap(self.refine, "Refine"),
        )


# Options of the channels to the stages. gRPC's reconnect backoff grows to 120 s by default, so a
# stage back after a minute could wait that out before the next connect; capped at 2 s, the first
# call after a restart waits at most that. round_robin spreads calls over every address the
# target resolves to (a headless Service, dns:///assessor:50053) and skips those that are down;
# with one address it behaves like the default pick_first.
STAGE_CHANNEL_OPTIONS: tuple[tuple[str, int | str], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", 2000),
    ("grpc.lb_policy_name", "round_robin"),
)
# What says "the stage is not there, or has no room now": worth a retry. Everything else (a bad
# request, a sandbox that cannot run, the deadline) would only be repeated.
RETRIED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED})


@dataclass(frozen=True)
class StageRetry:
    """Calls a stage again while it answers UNAVAILABLE or RESOURCE_EXHAUSTED: after half to all
    of ``min(max_delay_s, base_delay_s * 2**(n-1))`` before the n-th retry, never past the
    call's deadline. ``clock``, ``sleep`` and ``jitter`` are seams for tests."""

    base_delay_s: float = 0.25
    max_delay_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    jitter: Callable[[], float] = random.random

    def pause(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th retry (1, 2, ...)."""
        ceiling = min(self.max_delay_s, self.base_delay_s * 2.0 ** min(retry - 1, 60))
        return ceiling * (0.5 + 0.5 * self.jitter())

    def wrap(self, call: Callable[[Req, float], Awaitable[Resp]], name: str) -> Callable[[Req, float], Awaitable[Resp]]:
        async def retried(request: Req, timeout_s: float) -> Resp:
            return await self.call(call, request, timeout_s, name)

        return retried

    async def call(
        self, call: Callable[[Req, float], Awaitable[Resp]], request: Req, timeout_s: float, name: str
    ) -> Resp:
        """``call(request, time left)`` until it answers, fails for another reason, or the next
        pause would reach ``timeout_s``; a failure after retries says how many calls were made."""
        deadline = self.clock() + timeout_s
        refused: list[grpc.aio.AioRpcError] = []
        while True:
            try:
                return await call(request, max(deadline - self.clock(), 0.001))
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in RETRIED_CODES:
                    if not refused:
                        raise
                    raise _annotated(exc, refused, "") from None
                refused.append(exc)
                pause = self.pause(len(refused))
                if self.clock() + pause >= deadline:
                    raise _annotated(exc, refused, f"; no time left of the {timeout_s:g} s deadline") from None
                log.info("%s: %s (%s); calling again in %.2f s", name, exc.code().name, exc.details(), pause)
                await self.sleep(pause)


def _annotated(exc: grpc.aio.AioRpcError, refused: Sequence[grpc.aio.AioRpcError], why: str) -> grpc.aio.AioRpcError:
    """``exc`` with how many calls were made and the first refusal, in its details."""
    first = refused[0]
    calls = len(refused) + (0 if exc is refused[-1] else 1)
    earlier = "" if exc is first else f", the first refused with {first.code().name}: {first.details()}"
    details = f"{exc.details()} (after {calls} call{'' if calls == 1 else 's'}{earlier}{why})"
    return grpc.aio.AioRpcError(exc.code(), exc.initial_metadata(), exc.trailing_metadata(), details)


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
    result.sandbox_cpu_ms = assessment.cpu_ms
    result.sandbox_peak_rss_kb = assessment.peak_rss_kb
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
