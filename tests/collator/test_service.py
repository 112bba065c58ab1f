"""The real collator over a real ``grpc.aio`` channel, with the real embedding model."""

from __future__ import annotations

import os
import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from swarm.v1 import collator_pb2, collator_pb2_grpc, common_pb2
from swarm_collator.config import DEFAULT_MODEL_NAME

from .samples import (
    FIB_CLOSED_FORM,
    FIB_LOOP,
    FIB_LOOP_DOCUMENTED,
    FIB_MATRIX,
    FIB_RECURSIVE,
    FIB_RECURSIVE_DOCUMENTED,
    FIB_RECURSIVE_RENAMED,
    PROSE_SORT_A,
    PROSE_SORT_B,
    PROSE_WEATHER,
)

pytestmark = pytest.mark.asyncio(loop_scope="session")

Stub = collator_pb2_grpc.CollatorServiceStub


def code(candidate_id: str, source: str) -> common_pb2.CandidateCode:
    return common_pb2.CandidateCode(id=candidate_id, text=f"Here is my answer:\n```python\n{source}```", code=source)


def request(*candidates: common_pb2.CandidateCode, threshold: float = 0.0) -> collator_pb2.CollateRequest:
    return collator_pb2.CollateRequest(run_id="test-run", candidates=candidates, similarity_threshold=threshold)


async def test_near_identical_solutions_reach_consensus(collator: Stub) -> None:
    reply = await collator.Collate(
        request(
            code("c1", FIB_RECURSIVE),
            code("c2", FIB_RECURSIVE_DOCUMENTED),
            code("c3", FIB_RECURSIVE_RENAMED),
            code("c4", FIB_RECURSIVE),
        )
    )
    assert len(reply.clusters) == 1
    assert list(reply.clusters[0].candidate_ids) == ["c1", "c2", "c3", "c4"]
    assert reply.clusters[0].cohesion > 0.9
    assert reply.consensus.reached
    assert reply.consensus.share == 1.0
    assert reply.consensus.cluster_count == 1
    assert reply.embedding_model == DEFAULT_MODEL_NAME
    assert "recursive (fib)" in reply.analysis


async def test_majority_and_minority(collator: Stub) -> None:
    started = time.perf_counter()
    reply = await collator.Collate(
        request(
            code("r1", FIB_RECURSIVE),
            code("l1", FIB_LOOP),
            code("r2", FIB_RECURSIVE_DOCUMENTED),
            code("l2", FIB_LOOP_DOCUMENTED),
            code("r3", FIB_RECURSIVE_RENAMED),
        )
    )
    elapsed = time.perf_counter() - started
    print(f"5-candidate Collate took {elapsed * 1000:.0f} ms")
    assert elapsed < 10.0  # generous: CI machines are shared
    assert [list(c.candidate_ids) for c in reply.clusters] == [["r1", "r2", "r3"], ["l1", "l2"]]
    assert [c.id for c in reply.clusters] == [0, 1]
    assert reply.consensus.reached
    assert reply.consensus.share == pytest.approx(0.6)
    assert reply.consensus.majority_cluster_id == 0
    assert [s.candidate_id for s in reply.similarities] == ["r1", "l1", "r2", "l2", "r3"]
    assert [s.cluster_id for s in reply.similarities] == [0, 1, 0, 1, 0]
    assert all(0.0 < s.centrality < 1.0 for s in reply.similarities)
    assert "Diff between the representatives of clusters 0 and 1" in reply.analysis
    assert "1 loop" in reply.analysis


async def test_three_different_approaches_have_no_consensus(collator: Stub) -> None:
    reply = await collator.Collate(
        request(code("rec", FIB_RECURSIVE), code("mat", FIB_MATRIX), code("phi", FIB_CLOSED_FORM))
    )
    assert len(reply.clusters) == 3
    assert [c.id for c in reply.clusters] == [0, 1, 2]
    assert [c.representative_id for c in reply.clusters] == ["rec", "mat", "phi"]
    assert not reply.consensus.reached
    assert reply.consensus.share == pytest.approx(1 / 3)
    assert reply.consensus.cluster_count == 3
    assert "imports numpy" in reply.analysis
    assert "imports math" in reply.analysis


async def test_request_threshold_overrides_the_default(collator: Stub) -> None:
    candidates = (code("rec", FIB_RECURSIVE), code("loop", FIB_LOOP))
    strict = await collator.Collate(request(*candidates))
    loose = await collator.Collate(request(*candidates, threshold=0.5))
    assert strict.consensus.cluster_count == 2
    assert loose.consensus.cluster_count == 1
    assert "similarity >= 0.50" in loose.analysis


async def test_single_candidate(collator: Stub) -> None:
    reply = await collator.Collate(request(code("only", FIB_LOOP)))
    assert len(reply.clusters) == 1
    assert reply.clusters[0].representative_id == "only"
    assert reply.clusters[0].cohesion == 1.0
    assert reply.similarities[0].centrality == 1.0
    assert reply.consensus.share == 1.0
    assert not reply.consensus.reached


async def test_prose_only_replies_use_the_text(collator: Stub) -> None:
    reply = await collator.Collate(
        request(
            common_pb2.CandidateCode(id="a", text=PROSE_SORT_A),
            common_pb2.CandidateCode(id="b", text=PROSE_SORT_B),
            common_pb2.CandidateCode(id="w", text=PROSE_WEATHER),
        ),
    )
    assert [list(c.candidate_ids) for c in reply.clusters][-1] == ["w"]
    assert reply.similarities[2].centrality < reply.similarities[0].centrality
    assert "prose only, no code" in reply.analysis


def _many(count: int) -> list[common_pb2.CandidateCode]:
    return [code(f"c{i}", FIB_LOOP) for i in range(count)]


@pytest.mark.parametrize(
    ("candidates", "threshold", "message"),
    [
        ([], 0.0, "send at least one candidate"),
        (_many(65), 0.0, "send at most 64"),
        ([code("", FIB_LOOP)], 0.0, "candidates[0].id is empty"),
        ([code("a", FIB_LOOP), code("a", FIB_RECURSIVE)], 0.0, "candidates[1].id='a' is a duplicate"),
        ([common_pb2.CandidateCode(id="x", text=" ", code="")], 0.0, "has neither code nor text"),
        ([code("a", FIB_LOOP)], 1.5, "similarity_threshold=1.5 is outside [0, 1]"),
        ([code("a", FIB_LOOP)], -0.2, "or 0 for the server default"),
    ],
)
async def test_bad_input_is_invalid_argument(
    collator: Stub, candidates: list[common_pb2.CandidateCode], threshold: float, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await collator.Collate(request(*candidates, threshold=threshold))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in (info.value.details() or "")


async def test_health_is_serving(collator_channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(collator_channel)
    for service in ("swarm.v1.CollatorService", ""):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_hub_stays_offline(collator: Stub) -> None:
    import huggingface_hub.constants

    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert huggingface_hub.constants.HF_HUB_OFFLINE


DEEP_SUM = "x = " + "+".join(["1"] * 3000)
DEEP_NOT = "not " * 10000
PARSES_BUT_DEEP = "x = " + "+".join(["1"] * 600)


async def test_too_deeply_nested_code_gets_a_clean_answer(collator: Stub) -> None:
    response = await collator.Collate(
        request(code("sum", DEEP_SUM), code("not", DEEP_NOT), code("deep", PARSES_BUT_DEEP), code("loop", FIB_LOOP))
    )
    assert sorted(s.candidate_id for s in response.similarities) == ["deep", "loop", "not", "sum"]
    assert sum(len(c.candidate_ids) for c in response.clusters) == 4
    assert response.analysis.startswith("4 responses in ")
