"""What metrics cost: the ``/metrics`` answer time over a store of 10,000 runs, and what serving
and scraping them adds to a run.

Usage: .venv/bin/python bench/metrics.py [--stored 10000] [--scrapes 50] [--runs 20] [--size 3]

1. **Scrape time.** ``--stored`` finished runs are written into a fresh SQLite store through the
   product's store API (``RunStore.create_run`` / ``finish_run``), then the orchestrator serves
   over that store and ``/metrics`` is fetched ``--scrapes`` times. Each scrape reads the queue
   from the store (the same decision ``GetCapacity`` makes), so this is what a Prometheus pays.
2. **Overhead per run.** The same run (``--size`` replay instances that answer at once,
   refinement off) ``--runs`` times on each of two swarms side by side, runs alternated: one with
   every service's metrics endpoint off (``SWARM_METRICS_ADDR=off``), one with all four on and
   scraped every second, as Prometheus would. Counting into the registry happens in both (it is
   not switchable); what differs is the endpoints, the scrapes and their queue reads. Medians.

Printed, not asserted: the numbers depend on the machine and what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarm_bench.replay import ReplayServer
from swarm_bench.stack import Orchestrator, instances_json, orchestrator, stage_servers
from swarm_orchestrator.store import RunStore

TASK = "Write a Python function add(a, b) that returns the sum of a and b.\n\n>>> add(2, 3)\n5\n"
ANSWER = "```python\ndef add(a, b):\n    return a + b\n```\n"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _stored_run(index: int) -> pb.Run:
    """A finished run like the swarm stores: three candidates, usage, consensus, a gate verdict."""
    run = pb.Run(id=f"r-{uuid.uuid4().hex}", task=f"{TASK}# stored run {index}\n", swarm_size=3, quorum=2)
    run.created_at.GetCurrentTime()
    run.status = pb.RUN_STATUS_RUNNING
    return run


def _finish(run: pb.Run) -> None:
    run.status = pb.RUN_STATUS_SUCCEEDED if hash(run.id) % 10 else pb.RUN_STATUS_FAILED
    for slot in range(3):
        run.candidates.append(
            pb.Candidate(
                id=f"c{slot + 1}",
                origin=pb.CANDIDATE_ORIGIN_SWARM,
                instance=f"replay-{slot}",
                model="replay",
                text=ANSWER,
                code="def add(a, b):\n    return a + b\n",
                usage=common_pb2.Usage(prompt_tokens=120, completion_tokens=30, cost_usd=0.0001),
                rank=slot + 1,
            )
        )
    run.usage.CopyFrom(common_pb2.Usage(prompt_tokens=360, completion_tokens=90, cost_usd=0.0003))
    run.consensus.CopyFrom(common_pb2.Consensus(reached=True, share=1.0, cluster_count=1))
    run.gate.outcome = common_pb2.GATE_OUTCOME_PASS
    run.finished_at.GetCurrentTime()


async def fill(url: str, count: int) -> float:
    """Write ``count`` finished runs; the seconds it took."""
    store = await RunStore.open(url)
    started = time.perf_counter()
    try:
        for index in range(count):
            run = _stored_run(index)
            await store.create_run(run)
            _finish(run)
            await store.finish_run(run)
    finally:
        await store.close()
    return time.perf_counter() - started


async def scrape_times(port: int, scrapes: int) -> tuple[list[float], int]:
    """Seconds of each of ``scrapes`` GETs of /metrics, and the size of the last page."""
    times: list[float] = []
    size = 0
    async with httpx.AsyncClient(timeout=30.0) as http:
        for _ in range(scrapes):
            started = time.perf_counter()
            reply = await http.get(f"http://127.0.0.1:{port}/metrics")
            times.append(time.perf_counter() - started)
            reply.raise_for_status()
            size = len(reply.content)
    return times, size


async def one_run(orch: Orchestrator, size: int) -> float:
    started = time.perf_counter()
    done = None
    async for event in orch.stub.RunSwarm(pb.RunSwarmRequest(task=TASK, swarm_size=size, skip_refine=True)):
        if event.WhichOneof("event") == "done":
            done = event.done
    if done is None or done.status != pb.RUN_STATUS_SUCCEEDED:
        raise RuntimeError(f"the benchmark run did not succeed: {done}")
    return time.perf_counter() - started


async def _scraper(ports: list[int], stop: asyncio.Event) -> int:
    """Scrape every port once a second until ``stop``; the number of scrapes."""
    count = 0
    async with httpx.AsyncClient(timeout=10.0) as http:
        while not stop.is_set():
            for port in ports:
                with contextlib.suppress(httpx.HTTPError):
                    await http.get(f"http://127.0.0.1:{port}/metrics")
                    count += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    return count


@contextlib.asynccontextmanager
async def scraped(ports: list[int]) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(_scraper(ports, stop))
    try:
        yield
    finally:
        stop.set()
        await task


@contextlib.asynccontextmanager
async def swarm(
    replay: ReplayServer, url: str, metrics: bool, size: int
) -> AsyncIterator[tuple[Orchestrator, list[int]]]:
    """Stages and an orchestrator with every metrics endpoint on (their ports) or off."""
    env = {"SWARM_METRICS_ADDR": "127.0.0.1:0" if metrics else "off", "SWARM_UNHEALTHY_AFTER": "1000000"}
    instances = instances_json([(f"replay-{k}", replay.base_url(k)) for k in range(size)])
    async with stage_servers(env) as stages, orchestrator(stages, instances, url, env) as orch:
        await one_run(orch, size)  # warm-up: imports, the embedding model, connections
        ports = [*stages.metrics_ports.values()]
        if orch.server.metrics is not None and orch.server.metrics.port is not None:
            ports.append(orch.server.metrics.port)
        yield orch, ports


async def overhead(replay: ReplayServer, tmp: Path, runs: int, size: int) -> tuple[list[float], list[float]]:
    """Run times with metrics off and on, the two swarms side by side and their runs alternated, so
    that drift in what else the machine does falls on both alike."""
    off_url, on_url = (f"sqlite+aiosqlite:///{tmp / name}" for name in ("off.db", "on.db"))
    async with swarm(replay, off_url, False, size) as (off_orch, _), swarm(replay, on_url, True, size) as (on, ports):
        assert len(ports) == 4, f"metrics endpoints on: {ports}"
        off_times: list[float] = []
        on_times: list[float] = []
        async with scraped(ports):
            for _ in range(runs):
                off_times.append(await one_run(off_orch, size))
                on_times.append(await one_run(on, size))
    return off_times, on_times


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stored", type=int, default=10_000, help="finished runs in the store for the scrapes")
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--runs", type=int, default=20, help="runs per mode for the overhead")
    parser.add_argument("--size", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="swarm-metrics-bench-") as tmp:
        url = f"sqlite+aiosqlite:///{Path(tmp) / 'swarm.db'}"
        fill_s = await fill(url, args.stored)
        print(f"stored {args.stored} finished runs through RunStore in {fill_s:.1f} s")
        async with ReplayServer() as replay:
            replay.register(TASK, [ANSWER] * args.size, None)
            instances = instances_json([(f"replay-{k}", replay.base_url(k)) for k in range(args.size)])
            async with stage_servers() as stages, orchestrator(stages, instances, url) as orch:
                await one_run(orch, args.size)  # every run metric has a series on the page
                assert orch.server.metrics is not None and orch.server.metrics.port is not None
                times, size = await scrape_times(orch.server.metrics.port, args.scrapes)
            print(
                f"/metrics of the orchestrator over {args.stored} stored runs: {args.scrapes} scrapes, median "
                f"{statistics.median(times) * 1000:.1f} ms, p90 {_pct(times, 0.9) * 1000:.1f} ms, max "
                f"{max(times) * 1000:.1f} ms; page {size / 1024:.1f} KiB"
            )
            off, on = await overhead(replay, Path(tmp), args.runs, args.size)
    off_s, on_s = statistics.median(off), statistics.median(on)
    print(f"one run of {args.size} replay instances, refinement off, median of {args.runs}:")
    print(f"  metrics endpoints off: {off_s * 1000:.1f} ms (p90 {_pct(off, 0.9) * 1000:.1f} ms)")
    print(f"  on, scraped every 1 s: {on_s * 1000:.1f} ms (p90 {_pct(on, 0.9) * 1000:.1f} ms)")
    print(f"  difference: {(on_s - off_s) * 1000:+.1f} ms ({(on_s / off_s - 1) * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
