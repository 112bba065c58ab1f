"""The orchestrator through the gRPC-web gateway: a real Envoy (deploy/envoy/envoy.yaml) on an
ephemeral port in front of the real stack, called the way a browser's gRPC-web transport calls it.

One Envoy and one orchestrator serve the whole module; the instances are fake OpenAI-compatible
servers, two that answer at once and one that streams its answer slowly, so what arrives while the
slow one still generates shows whether the gateway streams or buffers.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import grpc
import httpx
import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.grpc_web import GrpcWebClient, GrpcWebError
from swarm_bench.stack import Orchestrator, Stages, instances_json, orchestrator
from swarm_cli.gateway import Gateway, running_gateway
from swarm_cli.gateway_config import GatewaySettings
from tests.fakes.openai_server import Behaviour, FakeLLMServer
from tests.fakes.replies import FIB_REPLY
from tests.orchestrator.keys import new_key
from tests.test_tracing import recorded_spans, server_span

ORIGIN = "http://127.0.0.1:8787"
OTHER_ORIGIN = "http://evil.example:8787"
SERVICE = "swarm.v1.OrchestratorService"
TASK = "Write a Python function fib(n) that returns the n-th Fibonacci number.\n\n>>> fib(10)\n55\n"
# The slow instance streams FIB_REPLY's ~100 pieces this far apart: about 2 s of generation.
SLOW_CHUNK_DELAY_S = 0.02
# What "arrived before the end" must beat: well over the gateway's and the loop's jitter, well
# under the slow instance's generation time.
STREAMED_BY_S = 1.0


@dataclass
class Web:
    gateway: Gateway
    client: GrpcWebClient  # sends the stack's approver key, as the Worker sends its service key
    http: httpx.AsyncClient
    orch: Orchestrator


@pytest.fixture(scope="module")
async def web(stages: Stages, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Web]:
    tmp = tmp_path_factory.mktemp("web-gateway")
    async with AsyncExitStack() as stack:
        fast_1 = await stack.enter_async_context(FakeLLMServer(reply=FIB_REPLY))
        fast_2 = await stack.enter_async_context(FakeLLMServer(reply=FIB_REPLY))
        slow = await stack.enter_async_context(
            FakeLLMServer(reply=FIB_REPLY, behaviour=Behaviour.SLOW, chunk_delay=SLOW_CHUNK_DELAY_S)
        )
        instances = instances_json([("fast-1", fast_1.base_url), ("fast-2", fast_2.base_url), ("slow", slow.base_url)])
        orch = await stack.enter_async_context(
            orchestrator(
                stages,
                instances,
                f"sqlite+aiosqlite:///{tmp / 'swarm.db'}",
                SWARM_INSTANCE_TIMEOUT_S="20",
                SWARM_TEST_WRITERS="0",
            )
        )
        host, _, port = orch.target.rpartition(":")
        settings = GatewaySettings("127.0.0.1", 0, host, int(port), (ORIGIN,))
        gateway = await stack.enter_async_context(running_gateway(settings, tmp / "gateway"))
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=60.0))
        client = GrpcWebClient(http, gateway.url, SERVICE, {"authorization": f"Bearer {orch.api_key}"})
        yield Web(gateway, client, http, orch)


async def _run(web: Web, request: pb.RunSwarmRequest) -> list[tuple[float, pb.RunSwarmResponse]]:
    return [event async for event in web.client.stream("RunSwarm", request, pb.RunSwarmResponse)]


async def test_progress_events_arrive_while_the_run_works(web: Web) -> None:
    events = await _run(web, pb.RunSwarmRequest(task=TASK, swarm_size=3, skip_refine=True))
    kinds = [event.WhichOneof("event") for _, event in events]
    assert kinds[0] == "accepted" and kinds[-1] == "done", kinds
    done_at, done = events[-1][0], events[-1][1].done
    assert done.status == pb.RUN_STATUS_SUCCEEDED and done.final.code
    finished = {event.instance_finished.instance: at for at, event in events if event.HasField("instance_finished")}
    assert set(finished) == {"fast-1", "fast-2", "slow"}
    # A buffering gateway would hand everything over at the end, at one instant.
    assert done_at - events[0][0] > STREAMED_BY_S, "accepted arrived only when the run ended"
    for fast in ("fast-1", "fast-2"):
        assert finished["slow"] - finished[fast] > STREAMED_BY_S, (
            f"{fast}'s instance_finished did not arrive while the slow instance was still generating"
        )


async def test_unary_calls_go_through(web: Web) -> None:
    events = await _run(web, pb.RunSwarmRequest(task=TASK, swarm_size=2, skip_refine=True, instances=["fast-1"]))
    run_id = events[-1][1].done.id
    listed = await web.client.unary("ListRuns", pb.ListRunsRequest(page_size=5), pb.ListRunsResponse)
    assert run_id in [run.id for run in listed.runs]
    got = await web.client.unary("GetRun", pb.GetRunRequest(run_id=run_id), pb.GetRunResponse)
    assert got.run.id == run_id and got.run.status == pb.RUN_STATUS_SUCCEEDED
    assert got.run.task == TASK


async def _preflight(web: Web, origin: str) -> httpx.Response:
    return await web.http.options(
        f"{web.gateway.url}/{SERVICE}/RunSwarm",
        headers={
            "origin": origin,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-grpc-web,x-user-agent",
        },
    )


async def test_cors_answers_only_the_pages_origin(web: Web) -> None:
    allowed = await _preflight(web, ORIGIN)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == ORIGIN
    assert "post" in allowed.headers["access-control-allow-methods"].lower()
    assert "x-grpc-web" in allowed.headers["access-control-allow-headers"].lower()
    other = await _preflight(web, OTHER_ORIGIN)
    assert "access-control-allow-origin" not in other.headers
    # The page may read the status of a call: the trailers' names are exposed to its script.
    reply = await web.http.post(
        f"{web.gateway.url}/{SERVICE}/ListRuns",
        content=b"\x00\x00\x00\x00\x00",
        headers={"content-type": "application/grpc-web+proto", "x-grpc-web": "1", "origin": ORIGIN},
    )
    assert reply.headers["access-control-allow-origin"] == ORIGIN
    assert "grpc-status" in reply.headers["access-control-expose-headers"].lower()


async def test_grpc_errors_arrive_as_status_and_message(web: Web) -> None:
    with pytest.raises(GrpcWebError) as empty_task:
        await _run(web, pb.RunSwarmRequest(task="  "))
    assert empty_task.value.status == grpc.StatusCode.INVALID_ARGUMENT
    assert "task is empty" in empty_task.value.message
    with pytest.raises(GrpcWebError) as missing:
        await web.client.unary("GetRun", pb.GetRunRequest(run_id="does-not-exist"), pb.GetRunResponse)
    assert missing.value.status == grpc.StatusCode.NOT_FOUND


async def test_only_the_orchestrator_is_served(web: Web) -> None:
    assert (await web.http.get(f"{web.gateway.url}/healthz")).status_code == 200
    assert (await web.http.get(f"{web.gateway.url}/")).status_code == 404
    assert (await web.http.post(f"{web.gateway.url}/grpc.health.v1.Health/Check")).status_code == 404


async def test_the_bearer_and_the_user_reach_the_orchestrator_through_the_gateway(web: Web) -> None:
    with pytest.raises(GrpcWebError) as anonymous:
        await web.client.unary("ListRuns", pb.ListRunsRequest(), pb.ListRunsResponse, metadata={})
    assert anonymous.value.status == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer <key>" in anonymous.value.message
    # A service key, as the Worker holds, names its user; the run is the user's within the key's tenant.
    service = {"authorization": f"Bearer {new_key(web.orch, 'worker', 'service')}", "x-swarm-user": "pat"}
    events = [
        e
        async for _, e in web.client.stream(
            "RunSwarm", pb.RunSwarmRequest(task=TASK, swarm_size=1, instances=["fast-1"]), pb.RunSwarmResponse, service
        )
    ]
    run_id = events[-1].done.id
    reply = await web.client.unary(
        "SubmitFeedback", pb.SubmitFeedbackRequest(run_id=run_id, rating=5), pb.SubmitFeedbackResponse, service
    )
    assert reply.feedback.user == "pat"
    with pytest.raises(GrpcWebError) as through:
        await web.client.unary("ApproveRun", pb.ApproveRunRequest(run_id=run_id), pb.ApproveRunResponse, service)
    assert through.value.status == grpc.StatusCode.PERMISSION_DENIED


async def test_the_callers_trace_reaches_the_orchestrator_through_the_gateway(web: Web) -> None:
    """The Worker starts a run's trace with a W3C traceparent (worker/src/worker/trace.ts); through
    Envoy, the orchestrator's RunSwarm joins that trace as the child of the Worker's span."""
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    metadata = {"authorization": f"Bearer {web.orch.api_key}", "traceparent": f"00-{trace_id}-{span_id}-01"}
    request = pb.RunSwarmRequest(task=TASK, swarm_size=1, instances=["fast-1"], skip_refine=True)
    with recorded_spans() as exporter:
        events = [e async for _, e in web.client.stream("RunSwarm", request, pb.RunSwarmResponse, metadata)]
        for _ in range(100):  # the server span ends just after the last message
            if any(s.name.endswith("/RunSwarm") for s in exporter.get_finished_spans()):
                break
            await asyncio.sleep(0.02)
        spans = exporter.get_finished_spans()
    run_swarm = server_span(spans, "/swarm.v1.OrchestratorService/RunSwarm")
    assert run_swarm.context is not None and run_swarm.parent is not None
    assert f"{run_swarm.context.trace_id:032x}" == trace_id
    assert f"{run_swarm.parent.span_id:016x}" == span_id
    assert run_swarm.attributes is not None and run_swarm.attributes["swarm.run_id"] == events[-1].done.id
