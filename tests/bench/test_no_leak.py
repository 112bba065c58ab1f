"""The hidden reference test reaches no instance and no service: it is read only to score afterwards.

The bench runs on two tasks with K=3 while every replay request (its raw body) and every gRPC
request to every service started in the process (orchestrator, collator, assessor, refiner; seen
by a server interceptor added to each server) is recorded; no recorded text may contain the
reference test or any of its lines. A task's visible tests, by contrast, are the user's and must
arrive: in the run request as attached tests, and at the assessor that runs them (unless the
bench is told ``visible_tests=False``).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from swarm_bench.quality import run_bench
from swarm_bench.quality_options import BenchOptions
from swarm_bench.replay import ReplayRequest
from tests.bench import data


class RecordingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Keeps (method, request) of every unary-request call a server handles."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Message]] = []

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        if handler.unary_unary is not None:
            unary = handler.unary_unary

            async def record_unary(request: Message, context: Any) -> Any:
                self.calls.append((method, request))
                return await unary(request, context)

            return grpc.unary_unary_rpc_method_handler(
                record_unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            stream = handler.unary_stream

            async def record_stream(request: Message, context: Any) -> Any:
                self.calls.append((method, request))
                async for item in stream(request, context):
                    yield item

            return grpc.unary_stream_rpc_method_handler(
                record_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler


def strings(value: object) -> Iterator[str]:
    """Every string inside a JSON value (keys included)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def needles(reference: str) -> list[str]:
    """The reference test as a whole and each of its non-trivial lines."""
    lines = [line.strip() for line in reference.splitlines()]
    return [reference.strip(), *(line for line in lines if len(line) > 12 and line != "def check(candidate):")]


def recording(monkeypatch: pytest.MonkeyPatch) -> RecordingInterceptor:
    """Every gRPC server started from now on records the requests it handles."""
    recorder = RecordingInterceptor()
    real_server = grpc.aio.server

    def recording_server(*args: Any, interceptors: Any = (), **kwargs: Any) -> Any:
        return real_server(*args, interceptors=[recorder, *interceptors], **kwargs)

    monkeypatch.setattr(grpc.aio, "server", recording_server)
    return recorder


def sent(recorder: RecordingInterceptor, method: str) -> list[Message]:
    return [request for name, request in recorder.calls if name.rsplit("/", 1)[-1] == method]


async def test_reference_tests_never_reach_instances_or_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = recording(monkeypatch)
    replayed: list[ReplayRequest] = []
    rows = data.records(with_reference=True, with_visible=True)
    path = data.write(tmp_path / "tiny.jsonl.gz", rows)
    # Refinement on, so the refiner (and the refine request to an instance) is covered too.
    options = BenchOptions(data=path, out=tmp_path / "out.jsonl", per_task=3, repeats=1, seed=1, refine=True)
    summary = await run_bench(options, on_request=replayed.append, log=None)

    # The runs happened and were scored (so the reference test was used, after the fact).
    assert summary.runs == 2 and summary.failed_runs == 0 and summary.scored_runs == 2
    lines = [json.loads(line) for line in options.out.read_text().splitlines()]
    assert [line["drawn_passed"] for line in lines] == [[True, False, True], [True, False, True]]
    assert all(line["passed"] for line in lines)

    bodies = [r.body.decode("utf-8", "replace") for r in replayed]
    services = [
        (method, text)
        for method, request in recorder.calls
        for text in strings(json.loads(json_format.MessageToJson(request)))
    ]
    methods = {method.rsplit("/", 1)[-1] for method, _ in recorder.calls}
    assert {"RunSwarm", "Collate", "Assess", "Refine"} <= methods
    assert sum(1 for r in replayed if r.purpose == "solve" and r.status == 200) == 6
    assert {"tests", "refine"} <= {r.purpose for r in replayed}
    # Positive control: the task itself is visible where it should be, so the search can see text.
    first_line = data.ADD_PROMPT.splitlines()[0]
    assert any(first_line in body for body in bodies)
    assert any(first_line in text for _, text in services)
    # The visible test does arrive, as the run's attached test and at the assessor that runs it.
    runs = sent(recorder, "RunSwarm")
    assert [list(r.tests) for r in runs] == [[data.ADD_VISIBLE], []]  # type: ignore[attr-defined]
    assert any(data.ADD_VISIBLE in r.attached_tests for r in sent(recorder, "Assess"))  # type: ignore[attr-defined]

    for reference in (data.ADD_REFERENCE, data.EVEN_REFERENCE):
        for needle in needles(reference):
            assert not any(needle in body for body in bodies), f"an instance was sent {needle!r}"
            leaked = [method for method, text in services if needle in text]
            assert not leaked, f"{leaked} received {needle!r}"
    for marker in ("REFERENCE-ONLY", "candidate("):
        assert not any(marker in body for body in bodies)
        assert not any(marker in text for _, text in services)


async def test_visible_tests_off_sends_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = recording(monkeypatch)
    path = data.write(tmp_path / "tiny.jsonl.gz", data.records(with_reference=True, with_visible=True))
    options = BenchOptions(data=path, out=tmp_path / "out.jsonl", per_task=2, limit=1, visible_tests=False)
    summary = await run_bench(options, log=None)
    assert summary.runs == 1 and summary.scored_runs == 1
    runs = sent(recorder, "RunSwarm")
    assert len(runs) == 1 and not list(runs[0].tests)  # type: ignore[attr-defined]
    assert not any("VISIBLE-3e1d" in text for _, r in recorder.calls for text in strings(_as_json(r)))


def _as_json(message: Message) -> object:
    return json.loads(json_format.MessageToJson(message))
