"""The ``CollatorService`` gRPC handler: validate, embed, cluster, explain."""

from __future__ import annotations

import logging
import time

import grpc
from opentelemetry import trace

from swarm.v1 import collator_pb2, collator_pb2_grpc, common_pb2
from swarmlib import InvalidArgumentError, check_candidate_ids

from .analysis import explain
from .candidate import Candidate
from .clustering import Collation, collate
from .config import CollatorConfig
from .embedder import Embedder

log = logging.getLogger(__name__)
tracer = trace.get_tracer(__name__)


def validate(request: collator_pb2.CollateRequest, max_candidates: int) -> list[Candidate]:
    """The request's candidates, or ``InvalidArgumentError`` saying which field to fix and how."""
    count = len(request.candidates)
    if count == 0:
        raise InvalidArgumentError("candidates is empty: send at least one candidate to collate")
    if count > max_candidates:
        raise InvalidArgumentError(
            f"candidates has {count} entries, more than the limit of {max_candidates}: send at most {max_candidates}"
        )
    threshold = request.similarity_threshold
    if threshold != 0.0 and not 0.0 <= threshold <= 1.0:
        raise InvalidArgumentError(
            f"similarity_threshold={threshold} is outside [0, 1]: use a cosine similarity in [0, 1], "
            "or 0 for the server default"
        )
    check_candidate_ids(item.id for item in request.candidates)
    candidates: list[Candidate] = []
    for position, item in enumerate(request.candidates):
        if not item.code.strip() and not item.text.strip():
            raise InvalidArgumentError(
                f"candidates[{position}] (id {item.id!r}) has neither code nor text: send the model's reply"
            )
        candidates.append(Candidate(id=item.id, text=item.text, code=item.code, behaviour=item.behaviour))
    return candidates


def to_response(
    candidates: list[Candidate], collation: Collation, analysis: str, model: str
) -> collator_pb2.CollateResponse:
    """Map the pure result onto the wire message; similarities stay in request order."""
    return collator_pb2.CollateResponse(
        clusters=[
            common_pb2.Cluster(
                id=cluster_id,
                candidate_ids=[candidates[i].id for i in cluster.members],
                representative_id=candidates[cluster.representative].id,
                cohesion=cluster.cohesion,
            )
            for cluster_id, cluster in enumerate(collation.clusters)
        ],
        consensus=common_pb2.Consensus(
            reached=collation.reached,
            share=collation.share,
            cluster_count=len(collation.clusters),
            majority_cluster_id=0,
            confidence=collation.confidence,
            basis=collation.basis,
        ),
        similarities=[
            collator_pb2.CandidateSimilarity(
                candidate_id=candidate.id,
                centrality=collation.centrality[i],
                cluster_id=collation.labels[i],
            )
            for i, candidate in enumerate(candidates)
        ],
        analysis=analysis,
        embedding_model=model,
    )


class CollatorServicer(collator_pb2_grpc.CollatorServiceServicer):
    """Holds the loaded model and the config; one instance serves every call."""

    def __init__(self, config: CollatorConfig, embedder: Embedder) -> None:
        self._config = config
        self._embedder = embedder

    async def Collate(
        self, request: collator_pb2.CollateRequest, context: grpc.aio.ServicerContext
    ) -> collator_pb2.CollateResponse:
        candidates = validate(request, self._config.max_candidates)
        threshold = request.similarity_threshold or self._config.similarity_threshold
        started = time.perf_counter()
        with tracer.start_as_current_span("collate") as span:
            span.set_attribute("swarm.run_id", request.run_id)
            span.set_attribute("swarm.candidates", len(candidates))
            embeddings = await self._embedder.embed([c.embedding_input for c in candidates])
            collation = collate(embeddings, threshold, self._config.consensus_share, [c.behaviour for c in candidates])
            analysis = explain(candidates, collation, threshold)
            span.set_attribute("swarm.clusters", len(collation.clusters))
            span.set_attribute("swarm.consensus", collation.reached)
        log.info(
            "run %s: %d candidates, %d clusters, consensus %s, %.0f ms",
            request.run_id or "-",
            len(candidates),
            len(collation.clusters),
            collation.reached,
            (time.perf_counter() - started) * 1000,
        )
        return to_response(candidates, collation, analysis, self._embedder.name)
