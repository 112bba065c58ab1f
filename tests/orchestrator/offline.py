"""A run without any server: the LLM instances behind an httpx ``MockTransport``, the collator,
assessor and refiner as plain async functions (``StageCalls``), the store on a SQLite file.

The plain stages judge programs by a script (code -> visible tests passed, behaviour), so a test
states exactly what the assessor would have found and looks only at what the orchestrator makes
of it: ranking, consensus, refinement's keep-or-drop, the gates' verdict.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import httpx

from swarm.v1 import assessor_pb2, collator_pb2, common_pb2, orchestrator_pb2 as pb, refiner_pb2
from swarm_orchestrator.config import OrchestratorConfig
from swarm_orchestrator.fanout import Fanout
from swarm_orchestrator.growth import Growth
from swarm_orchestrator.pipeline import Pipeline, RunOptions
from swarm_orchestrator.pool import InstancePool
from swarm_orchestrator.stages import StageCalls, StageRetry
from swarm_orchestrator.store import RunStore
from swarm_orchestrator.store_leases import LeaseTerms
from swarmlib import ChatClient, RetryPolicy, SwarmError, assessment_score, extract_code

TASK = "Write a Python function f(n) that returns n + 1.\n\n>>> f(1)\n2\n>>> f(2)\n3\n"


def fenced(code: str) -> str:
    return f"```python\n{code}```\n"


def rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


@dataclass(frozen=True)
class Verdict:
    """What the scripted assessor finds for one program: visible tests passed of ``total``."""

    passed: int
    total: int = 2
    behaviour: str = ""
    style: float = 1.0


def sse(text: str) -> bytes:
    """An OpenAI chat completion stream of ``text`` word by word, then usage, as llama.cpp sends it."""
    words = text.split(" ")
    pieces = [words[0], *(" " + word for word in words[1:])]
    chunks: list[dict[str, Any]] = [{"choices": [{"index": 0, "delta": {"content": piece}}]} for piece in pieces]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 20, "completion_tokens": 10}, "model": "qwen"})
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"


def llm(replies: Mapping[str, str]) -> httpx.MockTransport:
    """Instance ``name`` (the first path segment) answers a solve request with ``replies[name]``."""

    def handle(request: httpx.Request) -> httpx.Response:
        name = request.url.path.strip("/").split("/")[0]
        if request.headers.get("x-swarm-purpose") == "tests":
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse("assert f(3) == 4"))
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=sse(replies[name]))

    return httpx.MockTransport(handle)


@dataclass
class Scripted:
    """Plain-function stages: the assessor follows ``verdicts`` (by program), the collator groups
    by behaviour, the gates answer ``gate`` and the refiner ``refinements`` (one per round)."""

    verdicts: dict[str, Verdict]
    refinements: list[str] = field(default_factory=list)
    gate: common_pb2.GateOutcome = common_pb2.GATE_OUTCOME_PASS
    fail: dict[str, grpc.aio.AioRpcError] = field(default_factory=dict)  # stage name -> the error it raises
    fail_assess_of_refinements: bool = False
    calls: list[str] = field(default_factory=list)
    refine_requests: list[refiner_pb2.RefineRequest] = field(default_factory=list)
    after_assess: Callable[[], None] | None = None  # e.g. instances going down between stages

    def verdict(self, code: str) -> Verdict:
        """The scripted verdict on ``code`` (keys compared without surrounding blank space)."""
        by_code = {key.strip(): v for key, v in self.verdicts.items()}
        return by_code.get(code.strip(), Verdict(0))

    async def assess(self, request: assessor_pb2.AssessRequest, timeout: float) -> assessor_pb2.AssessResponse:
        self.calls.append("assess")
        refining = all(c.id.startswith("r") for c in request.candidates)
        if "assess" in self.fail or (refining and self.fail_assess_of_refinements):
            raise self.fail.get("assess", rpc_error(grpc.StatusCode.UNAVAILABLE, "assessor down"))
        assessments = []
        for c in request.candidates:
            v = self.verdict(c.code)
            correctness = v.passed / v.total
            scores = common_pb2.Scores(
                correctness=correctness,
                completeness=1.0,
                style=v.style,
                overall=assessment_score(correctness, 1.0, v.style),
                tests_passed=v.passed,
                tests_total=v.total,
            )
            tests = [
                common_pb2.TestResult(
                    name=f"doctest {i + 1}", passed=i < v.passed, origin=common_pb2.TEST_ORIGIN_VISIBLE
                )
                for i in range(v.total)
            ]
            assessments.append(
                assessor_pb2.Assessment(candidate_id=c.id, scores=scores, tests=tests, behaviour=v.behaviour)
            )
        if self.after_assess is not None:
            self.after_assess()
        return assessor_pb2.AssessResponse(assessments=assessments, tests_found=2, probes=4, sandbox="scripted")

    async def collate(self, request: collator_pb2.CollateRequest, timeout: float) -> collator_pb2.CollateResponse:
        self.calls.append("collate")
        if "collate" in self.fail:
            raise self.fail["collate"]
        groups: dict[str, list[str]] = {}
        for c in request.candidates:
            groups.setdefault(c.behaviour or c.id, []).append(c.id)
        ordered = sorted(groups.values(), key=len, reverse=True)
        clusters = [
            common_pb2.Cluster(id=i, candidate_ids=members, representative_id=members[0], cohesion=1.0)
            for i, members in enumerate(ordered)
        ]
        share = len(ordered[0]) / len(request.candidates)
        consensus = common_pb2.Consensus(
            reached=share > 0.5 and len(ordered[0]) >= 2,
            share=share,
            cluster_count=len(clusters),
            majority_cluster_id=0,
            confidence=share,
            basis="behaviour",
        )
        cluster_of = {cid: k.id for k in clusters for cid in k.candidate_ids}
        similarities = [
            collator_pb2.CandidateSimilarity(candidate_id=c.id, centrality=0.9, cluster_id=cluster_of[c.id])
            for c in request.candidates
        ]
        return collator_pb2.CollateResponse(
            clusters=clusters, consensus=consensus, similarities=similarities, analysis="scripted analysis"
        )

    async def evaluate_gates(
        self, request: assessor_pb2.EvaluateGatesRequest, timeout: float
    ) -> assessor_pb2.EvaluateGatesResponse:
        self.calls.append("gates")
        if "gates" in self.fail:
            raise self.fail["gates"]
        summary = "pass: 1 rule(s) passed" if self.gate == common_pb2.GATE_OUTCOME_PASS else "scripted verdict"
        return assessor_pb2.EvaluateGatesResponse(decision=common_pb2.GateDecision(outcome=self.gate, summary=summary))

    async def refine(self, request: refiner_pb2.RefineRequest, timeout: float) -> refiner_pb2.RefineResponse:
        self.calls.append(f"refine {request.round}")
        self.refine_requests.append(request)
        if "refine" in self.fail:
            raise self.fail["refine"]
        text = self.refinements[request.round - 1]
        usage = common_pb2.Usage(prompt_tokens=100, completion_tokens=30)
        return refiner_pb2.RefineResponse(
            text=text,
            code=extract_code(text, request.task),
            usage=usage,
            latency_ms=5.0,
            explanation=f"round {request.round} changes",
            template_version="refine_v2",
        )

    def stage_calls(self) -> StageCalls:
        return StageCalls(
            collate=self.collate, assess=self.assess, evaluate_gates=self.evaluate_gates, refine=self.refine
        )


@dataclass
class Offline:
    """One orchestrator pipeline over scripted stages; ``events`` holds what its runs streamed."""

    pipeline: Pipeline
    store: RunStore
    instances: list[str]
    events: list[pb.RunSwarmResponse] = field(default_factory=list)

    async def run(
        self, size: int | None = None, *, refine: bool = True, task: str = TASK, growth: Growth | None = None
    ) -> tuple[pb.Run, SwarmError | None]:
        """One run of ``size`` slots (one per instance by default), stored first as the service does;
        with ``growth``, an adaptive run that may grow to them."""
        size = size or len(self.instances)
        run = pb.Run(id=uuid.uuid4().hex[:16], task=task, status=pb.RUN_STATUS_RUNNING, swarm_size=size, quorum=1)
        run.created_at.GetCurrentTime()
        await self.store.create_run(run)
        self.events.clear()

        async def emit(event: pb.RunSwarmResponse) -> None:
            self.events.append(event)

        options = RunOptions(allowed=list(self.instances), refine=refine, timeout_s=5.0, growth=growth)
        return await self.pipeline.execute(run, options, emit)

    def streamed(self, kind: str) -> list[pb.RunSwarmResponse]:
        return [e for e in self.events if e.WhichOneof("event") == kind]


@asynccontextmanager
async def offline(
    database_url: str, replies: Mapping[str, str], scripted: Scripted, retry: StageRetry | None = None, **env: str
) -> AsyncIterator[Offline]:
    """A pipeline whose instance ``name`` answers ``replies[name]`` and whose stages are ``scripted``
    (called through ``retry``, as the service calls its stages, when given)."""
    instances = json.dumps(
        [{"name": name, "base_url": f"http://{name}.test/{name}/v1", "model": "qwen"} for name in replies]
    )
    config = OrchestratorConfig.from_env({"SWARM_INSTANCES": instances, "SWARM_DATABASE_URL": database_url, **env})
    store = await RunStore.open(config.database_url, lease=LeaseTerms(ttl_s=config.run_lease_s))
    try:
        async with httpx.AsyncClient(transport=llm(replies)) as http:
            pool = InstancePool(config.instances, {}, config.unhealthy_after)
            fanout = Fanout(pool, ChatClient(http, RetryPolicy(attempts=1)))
            calls = scripted.stage_calls() if retry is None else scripted.stage_calls().retrying(retry)
            yield Offline(Pipeline(config, pool, fanout, calls, store), store, list(replies))
    finally:
        await store.close()
