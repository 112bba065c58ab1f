"""One swarm run is one trace: the orchestrator's RunSwarm span is the root of every hop after it.

The four services run in this process over real gRPC channels, each with the tracer provider its
``create_server`` gets from ``configure_tracing``; an in-memory exporter is attached to those
providers, and the spans are picked out by the run's trace id (providers are cached per process,
so other tests may have configured them and may emit spans of their own).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import instances_json, orchestrator, stage_servers
from swarm_orchestrator.prompts import SOLVE_SYSTEM
from swarmlib import configure_tracing
from tests.fakes.openai_server import Behaviour, FakeLLMServer, Messages
from tests.fakes.replies import REFINED_FIB_REPLY
from tests.orchestrator.test_swarm import WRONG_FIB_REPLY

SERVICES = ("swarm-orchestrator", "swarm-collator", "swarm-assessor", "swarm-refiner")

FIB_TASK = """Write a Python function fib(n) that returns the n-th Fibonacci number.

>>> fib(0)
0
>>> fib(10)
55
"""


def solve_or_refine(messages: Messages) -> str:
    """A swarm answer that fails a visible test (so the run is refined), and its fix."""
    is_solve = any(m.get("role") == "system" and m.get("content") == SOLVE_SYSTEM for m in messages)
    return WRONG_FIB_REPLY if is_solve else REFINED_FIB_REPLY


@contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    """Every span the four services' providers end from now on, until the block exits."""
    exporter = InMemorySpanExporter()
    for name in SERVICES:
        # The same (cached) provider the servers will get, since their env has no OTEL_SERVICE_NAME.
        configure_tracing(name, {}).add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        exporter.shutdown()  # the processors stay on the cached providers but record nothing more


def server_span(spans: Sequence[ReadableSpan], method: str) -> ReadableSpan:
    matches = [s for s in spans if s.kind is SpanKind.SERVER and s.name == method]
    assert len(matches) == 1, f"{method}: {[s.name for s in spans]}"
    return matches[0]


def service_of(span: ReadableSpan) -> object:
    return span.resource.attributes.get("service.name")


async def test_one_run_is_one_trace_across_every_service_and_the_llm(tmp_path: Path) -> None:
    with recorded_spans() as exporter:
        async with (
            FakeLLMServer(behaviour=Behaviour.ANSWER, reply=solve_or_refine) as llm,
            stage_servers() as stages,
            orchestrator(
                stages, instances_json([("fake-1", llm.base_url)]), f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
            ) as orch,
        ):
            events = [e async for e in orch.stub.RunSwarm(pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2))]
            run = events[-1].done
            assert run.status == pb.RUN_STATUS_SUCCEEDED and run.refinement.reason
            # The server span ends just after the last message is sent; give it a moment.
            for _ in range(100):
                if any(s.name.endswith("/RunSwarm") for s in exporter.get_finished_spans()):
                    break
                await asyncio.sleep(0.02)
        spans = exporter.get_finished_spans()

    root = server_span(spans, "/swarm.v1.OrchestratorService/RunSwarm")
    assert root.context is not None and root.parent is None
    trace_id = root.context.trace_id
    in_run = [s for s in spans if s.context is not None and s.context.trace_id == trace_id]

    hops = {
        "/swarm.v1.OrchestratorService/RunSwarm": "swarm-orchestrator",
        "/swarm.v1.CollatorService/Collate": "swarm-collator",
        "/swarm.v1.AssessorService/Assess": "swarm-assessor",
        "/swarm.v1.RefinerService/Refine": "swarm-refiner",
    }
    for method, service in hops.items():
        servers = [s for s in in_run if s.kind is SpanKind.SERVER and s.name == method]
        assert servers, f"no {method} server span in the run's trace; spans: {sorted({s.name for s in in_run})}"
        assert all(service_of(s) == service for s in servers), [service_of(s) for s in servers]
        if method.endswith("/RunSwarm"):
            continue
        # Each downstream server span is the child of the orchestrator's client span for that call.
        clients = {s.context.span_id: s for s in in_run if s.kind is SpanKind.CLIENT and s.name == method}
        for span in servers:
            assert span.parent is not None and span.parent.is_remote and span.parent.span_id in clients
            assert service_of(clients[span.parent.span_id]) == "swarm-orchestrator"
    # Assessed twice: the swarm's candidates, then the refined answer.
    assert len([s for s in in_run if s.kind is SpanKind.SERVER and s.name.endswith("/Assess")]) == 2

    # The LLM calls: two solves and one test-writing request from the orchestrator, one refinement
    # from the refiner, each an ``llm.chat`` span whose context the model server got as ``traceparent``.
    chats = [s for s in in_run if s.name == "llm.chat"]
    purposes = sorted(str(s.attributes.get("swarm.purpose")) for s in chats if s.attributes)
    assert purposes == ["refine", "solve", "solve", "tests"]
    for span in chats:
        attributes = span.attributes or {}
        assert attributes.get("swarm.instance") == "fake-1"
        assert attributes.get("gen_ai.request.model") == "qwen"
        assert int(str(attributes.get("gen_ai.usage.input_tokens"))) > 0
        assert int(str(attributes.get("gen_ai.usage.output_tokens"))) > 0
    refine_chat = next(s for s in chats if s.attributes and s.attributes.get("swarm.purpose") == "refine")
    refine_server = server_span(in_run, "/swarm.v1.RefinerService/Refine")
    assert refine_chat.parent is not None and refine_server.context is not None
    assert refine_chat.parent.span_id == refine_server.context.span_id

    chat_span_ids = {s.context.span_id for s in chats if s.context is not None}
    requests = llm.chat_requests
    assert len(requests) == 4
    for request in requests:
        version, header_trace, parent_span, flags = request.headers["traceparent"].split("-")
        assert version == "00" and int(flags, 16) & 0x01  # sampled
        assert int(header_trace, 16) == trace_id
        assert int(parent_span, 16) in chat_span_ids
