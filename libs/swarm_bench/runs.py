"""Runs sent through a stack and what became of each: shared by the load and soak benches.

A ``RunSwarm`` call ends one of three ways: **answered** (the stream ends with its ``done`` event,
status SUCCEEDED or NEEDS_APPROVAL), **refused up front** (``RESOURCE_EXHAUSTED`` before the run
was accepted, nothing stored), or **failed** (anything else: a run accepted and then failed,
``UNKNOWN``, a broken stream). Also here: a throwaway database for a bench, percentiles, the
stored runs still RUNNING, and the process's resident memory.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc

from swarm.v1 import orchestrator_pb2 as pb

from .stack import Orchestrator

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
ANSWERED = (pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_NEEDS_APPROVAL)


@dataclass
class Outcome:
    """One call: how it ended, and its timings when it was answered."""

    kind: str  # answered, refused, failed
    detail: str
    run_id: str = ""
    wall_s: float = 0.0
    overhead_s: float = 0.0
    error: str = ""  # the run's stored error, when its stream ended with one
    queue_wait_s: float = 0.0  # how long it waited in the queue at the door (Run.queue_wait_ms)
    deepest_queue: int = 0  # the largest depth its queued events showed


def _overhead(events: list[tuple[float, pb.RunSwarmResponse]], started: float, ended: float, queued_s: float) -> float:
    """Wall time minus the wait in the queue at the door, the slowest instance's generation and
    the assessment stage."""
    finished = [e.instance_finished.latency_ms / 1000.0 for _, e in events if e.HasField("instance_finished")]
    last_answer = max((at for at, e in events if e.HasField("instance_finished")), default=started)
    assessed = next((at for at, e in events if e.HasField("assessed")), last_answer)
    generation = max(finished, default=0.0)
    return max(0.0, (ended - started) - queued_s - generation - max(0.0, assessed - last_answer))


async def one_run(orch: Orchestrator, request: pb.RunSwarmRequest, timeout_s: float = 600.0) -> Outcome:
    """Send one run and classify how it ended."""
    started = time.perf_counter()
    events: list[tuple[float, pb.RunSwarmResponse]] = []
    try:
        async for event in orch.stub.RunSwarm(request, timeout=timeout_s):
            events.append((time.perf_counter(), event))
    except grpc.aio.AioRpcError as exc:
        accepted = any(e.HasField("accepted") for _, e in events)
        code = exc.code().name
        kind = "refused" if code == "RESOURCE_EXHAUSTED" and not accepted else "failed"
        run_id = events[0][1].run_id if events else ""
        done = events[-1][1].done if events and events[-1][1].HasField("done") else None
        error = done.error if done is not None else exc.details() or ""
        return Outcome(kind, f"{code}{' after acceptance' if accepted else ''}", run_id, error=error)
    ended = time.perf_counter()
    done = events[-1][1].done if events and events[-1][1].HasField("done") else None
    if done is None:
        return Outcome("failed", "stream ended without done", events[0][1].run_id if events else "")
    kind = "answered" if done.status in ANSWERED else "failed"
    queued_s = done.queue_wait_ms / 1000.0
    return Outcome(
        kind,
        pb.RunStatus.Name(done.status),
        done.id,
        ended - started,
        _overhead(events, started, ended, queued_s),
        error=done.error,
        queue_wait_s=queued_s,
        deepest_queue=max((e.queued.depth for _, e in events if e.HasField("queued")), default=0),
    )


@asynccontextmanager
async def database(kind: str, tmp: Path, prefix: str = "swarm_bench") -> AsyncIterator[str]:
    """A fresh SQLite file under ``tmp``, or a PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp / f'{prefix}.db'}"
        return
    import asyncpg  # only for PostgreSQL

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank); NaN for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else float("nan")


async def stored_running(orch: Orchestrator) -> tuple[int, int]:
    """Stored runs still RUNNING, and all stored runs."""
    running = total = 0
    token = ""
    while True:
        page = await orch.stub.ListRuns(pb.ListRunsRequest(page_size=100, page_token=token))
        total += len(page.runs)
        running += sum(1 for run in page.runs if run.status == pb.RUN_STATUS_RUNNING)
        token = page.next_page_token
        if not token:
            return running, total


def rss_mb() -> float:
    """This process's resident memory now (Linux ``/proc``), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")
