"""Canary secrets through whole runs: they are used, and they never show where they should not.

An instance's API key (the variable its ``api_key_env`` names) and ``RUNLOOP_API_KEY`` are real
credentials the services send where they belong: to the instance, the refiner's instance and the
(fake) Runloop API. The caller's swarm API key goes on every call to the orchestrator, and a
forged one on a refused call. A secret written in a task is the user's. None of them may appear in a log
record, a span, a metric, a stored run's error messages or the message of an error a caller gets:
across a run that answers (refined, one instance on a Runloop devbox), a run whose only instance
answers 500 echoing the request's headers, a run whose assessment fails, and refused requests.
The task itself is stored in its run, as it must be.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.fake_runloop import FakeRunloopAPI
from swarm_bench.http1 import HttpRequest, send_json
from swarm_bench.openai_wire import error_body
from swarm_bench.stack import Stages, orchestrator as orchestrator_on, stage_servers
from swarmlib import configure_tracing
from tests.fakes.openai_server import FakeLLMServer
from tests.fakes.replies import FIB_REPLY, REFINED_FIB_REPLY
from tests.orchestrator.test_swarm import WRONG_FIB_REPLY, solve_or_refine

INSTANCE_KEY = "sk-canary-instance-KEY-5b1f0c9e"
RUNLOOP_KEY = "rl-canary-runloop-KEY-93ad7e11"
TASK_SECRET = "canary-task-SECRET-c0ffee42"
KEYS = (INSTANCE_KEY, RUNLOOP_KEY)
KEY_ENV = "SWARM_TEST_INSTANCE_KEY"
TASK = f"""Write a Python function fib(n) that returns the n-th Fibonacci number.
Internal note, never repeat it: {TASK_SECRET}

>>> fib(10)
55
"""
# Attached tests are the user's too: one carries the secret (in a comment, so it still runs); one
# that is not Python carries it as well and is refused up front, by position, never quoted.
ATTACHED = ["assert fib(1) == 1", f"assert fib(2) == 1  # {TASK_SECRET}"]
NOT_PYTHON = f"check that {TASK_SECRET} stays private"
SERVICES = ("swarm-orchestrator", "swarm-collator", "swarm-assessor", "swarm-refiner")
DEVBOX_PORT = 8080


@dataclass
class EchoingLLM(FakeLLMServer):
    """An instance that answers every request 500 and echoes its headers, as some gateways do."""

    async def handle(self, request: HttpRequest, writer: asyncio.StreamWriter) -> bool:
        auth = request.headers.get("authorization", "")
        echoed = error_body(f"upstream refused {auth!r} (headers {request.headers})", "server_error")
        await send_json(writer, 500, echoed, False)
        return False


@dataclass
class Seen:
    """What callers got: every stream's events and every error's message."""

    runs: list[pb.Run] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


async def run(stub: Any, seen: Seen, request: pb.RunSwarmRequest) -> pb.Run | None:
    events: list[pb.RunSwarmResponse] = []
    try:
        async for event in stub.RunSwarm(request, timeout=120):
            events.append(event)
    except grpc.aio.AioRpcError as exc:
        seen.errors.append(exc.details() or "")
    done = [e.done for e in events if e.WhichOneof("event") == "done"]
    seen.runs.extend(done)
    return done[0] if done else None


@contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    for name in SERVICES:
        configure_tracing(name, {}).add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        exporter.shutdown()


def recorded_metrics() -> InMemoryMetricReader:
    """A reader on the global meter provider: whatever the services (or a library) record lands here."""
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return reader


def span_texts(span: ReadableSpan) -> Iterable[str]:
    yield span.name
    yield str(dict(span.attributes or {}))
    yield str(span.status.description or "")
    for event in span.events:
        yield event.name
        yield str(dict(event.attributes or {}))
    for link in span.links:
        yield str(dict(link.attributes or {}))


def error_texts(run: pb.Run) -> Iterable[str]:
    """What a stored run says about what went wrong, where the task has no business."""
    yield run.error
    yield run.refinement.reason
    yield run.gate.summary
    for failure in run.failures:
        yield failure.reason
    for candidate in run.candidates:
        yield candidate.error


def devbox_env(fake: FakeRunloopAPI) -> dict[str, str]:
    return {
        "SWARM_DEVBOX_INSTANCES": "1",
        "SWARM_DEVBOX_MODE": "per-run",
        "SWARM_DEVBOX_BLUEPRINT": "qwen-llama-server",
        "SWARM_DEVBOX_PORT": str(DEVBOX_PORT),
        "SWARM_DEVBOX_MODEL": "qwen",
        "SWARM_DEVBOX_TUNNEL_URL": fake.tunnel_url,
        "SWARM_DEVBOX_PROBE_INTERVAL_S": "0.01",
        "RUNLOOP_BASE_URL": fake.base_url,
        "SWARM_RUNLOOP_MAX_RETRIES": "1",
    }


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeLLMServer, EchoingLLM, FakeRunloopAPI]]:
    async with AsyncExitStack() as stack:
        good = await stack.enter_async_context(FakeLLMServer(reply=solve_or_refine(WRONG_FIB_REPLY, REFINED_FIB_REPLY)))
        echoing = await stack.enter_async_context(EchoingLLM())
        runloop = await stack.enter_async_context(FakeRunloopAPI(api_key=RUNLOOP_KEY))
        devbox_llm = await stack.enter_async_context(FakeLLMServer(reply=solve_or_refine(FIB_REPLY, REFINED_FIB_REPLY)))
        runloop.serve(DEVBOX_PORT, devbox_llm.port)
        yield good, echoing, runloop


async def test_canary_secrets_never_reach_logs_spans_metrics_stored_errors_or_callers(
    fakes: tuple[FakeLLMServer, EchoingLLM, FakeRunloopAPI], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good, echoing, runloop = fakes
    instances = json.dumps(
        [
            {"name": "fake-1", "base_url": good.base_url, "model": "qwen", "api_key_env": KEY_ENV},
            {"name": "fake-2", "base_url": echoing.base_url, "model": "qwen", "api_key_env": KEY_ENV},
        ]
    )
    secrets = {KEY_ENV: INSTANCE_KEY, "RUNLOOP_API_KEY": RUNLOOP_KEY}
    stage_env = {**secrets, "SWARM_INSTANCES": instances}
    database = f"sqlite+aiosqlite:///{tmp_path / 'swarm.db'}"
    seen = Seen()
    reader = recorded_metrics()
    caplog.set_level(logging.DEBUG)
    with recorded_spans() as exporter:
        async with stage_servers(stage_env) as stages, AsyncExitStack() as stack:
            env = {**secrets, **devbox_env(runloop), "SWARM_LLM_RETRY_ATTEMPTS": "1"}
            orch = await stack.enter_async_context(orchestrator_on(stages, instances, database, env))
            # A run that answers: one instance with its key, one on a Runloop devbox, refined.
            answered = await run(
                orch.stub,
                seen,
                pb.RunSwarmRequest(task=TASK, swarm_size=2, instances=["fake-1", "devbox-1"], tests=ATTACHED),
            )
            assert answered is not None and answered.status == pb.RUN_STATUS_SUCCEEDED, answered
            assert answered.refinement.rounds >= 1 and answered.task == TASK
            # A run whose only instance answers 500, echoing the Authorization header it was sent.
            failed = await run(orch.stub, seen, pb.RunSwarmRequest(task=TASK, swarm_size=1, instances=["fake-2"]))
            assert failed is not None and failed.status == pb.RUN_STATUS_FAILED and failed.failures
            # The caller's API key (sent on every call above) and a forged one, refused.
            swarm_key = orch.api_key
            forged = swarm_key[:-8] + ("A" * 8 if not swarm_key.endswith("A" * 8) else "B" * 8)
            with pytest.raises(grpc.aio.AioRpcError) as refused_key:
                await orch.stub.ListRuns(pb.ListRunsRequest(), metadata=(("authorization", f"Bearer {forged}"),))
            assert refused_key.value.code() == grpc.StatusCode.UNAUTHENTICATED
            seen.errors.append(refused_key.value.details() or "")
            assert swarm_key.split("_", 2)[2] not in orch.keys_file.read_text(), "the keys file holds digests only"
            # Refused requests whose fields hold the secret.
            for refused in (
                pb.RunSwarmRequest(task=TASK + "\x00"),
                pb.RunSwarmRequest(task=TASK, instances=["nope"]),
                pb.RunSwarmRequest(task=TASK * 1000),
                pb.RunSwarmRequest(task=TASK, tests=[*ATTACHED, NOT_PYTHON]),
            ):
                assert await run(orch.stub, seen, refused) is None
            # A run whose assessment fails: the assessor is gone.
            broken = Stages(stages.collator, "127.0.0.1:1", stages.refiner)
            lost = await stack.enter_async_context(
                orchestrator_on(broken, instances, f"sqlite+aiosqlite:///{tmp_path / 'lost.db'}", env)
            )
            unassessed = await run(lost.stub, seen, pb.RunSwarmRequest(task=TASK, swarm_size=1, instances=["fake-1"]))
            assert unassessed is not None and unassessed.status == pb.RUN_STATUS_FAILED
            assert unassessed.error.startswith("assessment failed"), unassessed.error
            stored = [(await orch.stub.GetRun(pb.GetRunRequest(run_id=r.id))).run for r in (answered, failed)]
            stored.append((await lost.stub.GetRun(pb.GetRunRequest(run_id=unassessed.id))).run)
            reports = [
                (await orch.stub.GetRunReport(pb.GetRunReportRequest(run_id=r.id, format=f))).content
                for r in (answered, failed)
                for f in (pb.REPORT_FORMAT_JSON, pb.REPORT_FORMAT_MARKDOWN)
            ]
            await asyncio.sleep(0.1)  # the last server spans end just after their last message
        spans = exporter.get_finished_spans()

    # The canaries were in play: each key went where it belongs.
    assert {r.headers.get("authorization") for r in good.chat_requests} == {f"Bearer {INSTANCE_KEY}"}
    assert any(r.path.endswith("/chat/completions") for r in good.chat_requests)
    assert runloop.calls("create"), "the devbox was provisioned with the Runloop key"
    assert len(seen.errors) >= 5 and len(seen.runs) == 3

    leaks: list[str] = []

    def look(where: str, texts: Iterable[str], canaries: Iterable[str]) -> None:
        for text in texts:
            for canary in canaries:
                if canary in text:
                    leaks.append(f"{canary} in {where}: {text[:300]!r}")

    keys = (*KEYS, swarm_key.split("_", 2)[2], forged.split("_", 2)[2])
    everything = (*keys, TASK_SECRET)
    look("an error sent to a caller", seen.errors, everything)
    for r in (*seen.runs, *stored):
        look(f"run {r.id}", [json_format.MessageToJson(r)], keys)
        look(f"run {r.id}'s error messages", error_texts(r), [TASK_SECRET])
    look("a run report", reports, keys)
    for record in caplog.records:
        text = record.getMessage() + (logging.Formatter().formatException(record.exc_info) if record.exc_info else "")
        look(f"log record {record.name}:{record.levelname}", [text], keys)
        ours = record.name.startswith(("swarm", "tests"))
        if ours or record.levelno >= logging.INFO:
            look(f"log record {record.name}:{record.levelname}", [text], [TASK_SECRET])
    for span in spans:
        look(f"span {span.name}", span_texts(span), everything)
        look(f"span {span.name}'s resource", [str(dict(span.resource.attributes))], everything)
    data = reader.get_metrics_data()
    look("metrics", [data.to_json() if data is not None else ""], everything)
    assert not leaks, "\n".join(leaks)
    assert spans and caplog.records
