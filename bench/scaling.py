"""A burst against a devbox pool that grows on queue depth: how soon it grows, what that does to
the wait in the queue at the door, and whether the grown devboxes go away after the burst.

Usage: .venv/bin/python bench/scaling.py [--runs 100] [--start 2] [--max 6] [--think-ms 400]
       [--provision-ms 500] [--grow-after-s 1] [--cooldown-s 1] [--shrink-idle-s 2] [--no-baseline]

The orchestrator, collator, assessor and refiner run in this process (``swarm_bench.stack``);
the devbox instances are provisioned through the real Runloop SDK against the fake Runloop API
(``swarm_bench.fake_runloop``, started in process), whose tunnels lead to one model server here
that takes ``--think-ms`` per answer. Each devbox takes one run at a time (SWARM_INSTANCE_SLOTS=1,
no test writer, refinement off), so the queue's depth is the runs beyond the devboxes serving.
``--runs`` runs of one answer each are sent together to a pool of ``--start`` devboxes that may
grow to ``--max``. ``--provision-ms`` is how long the fake keeps a new devbox provisioning: real
devboxes take seconds to minutes to boot and load a model, so the growth figures here are floors.

Printed: the time from the burst until the pool first grew and until it reached ``--max``; the
wait in the queue at the door (p50/p99) of the runs that started before the first growth and of
those that started after it, and of the whole burst; the same burst on a fixed pool of
``--start`` devboxes (unless ``--no-baseline``); and after the burst, how many devboxes were shut
down and how long after the last run the pool was back at its minimum.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.fake_runloop import FakeRunloopAPI
from swarm_bench.http1 import HttpRequest, HttpServer, send_json
from swarm_bench.openai_wire import ChatReply, error_body, estimate_tokens, model_list, send_reply
from swarm_bench.stack import Orchestrator, Stages, orchestrator, stage_servers

TASK = "Write a Python function add(a, b) that returns the sum of a and b.\n\n>>> add(2, 3)\n5\n"
ANSWER = "```python\ndef add(a, b):\n    return a + b\n```\n"
PORT = 8080
MODEL = "qwen"


@dataclass
class SlowModel(HttpServer):
    """An OpenAI-compatible server that takes ``think_s`` per completion (every devbox's server)."""

    think_s: float = 0.4
    busy: int = 0
    peak: int = 0

    async def handle(self, request: HttpRequest, writer: asyncio.StreamWriter) -> bool:
        route = request.path.split("?", 1)[0].rstrip("/")
        if request.method == "GET" and route.endswith("/models"):
            await send_json(writer, 200, model_list(MODEL, "bench"), request.keep_alive)
            return request.keep_alive
        if request.method != "POST" or not route.endswith("/chat/completions"):
            await send_json(writer, 404, error_body(f"no route {route}", "not_found"), request.keep_alive)
            return request.keep_alive
        body: dict[str, Any] = json.loads(request.body)
        self.busy += 1
        self.peak = max(self.peak, self.busy)
        try:
            await asyncio.sleep(self.think_s)
        finally:
            self.busy -= 1
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        reply = ChatReply(f"chatcmpl-{uuid.uuid4().hex[:12]}", MODEL, ANSWER, estimate_tokens(prompt), "fp_bench")
        await send_reply(writer, reply, body, request.keep_alive)
        return request.keep_alive


@dataclass
class Burst:
    """One burst's figures (seconds from the burst's start)."""

    waits: list[tuple[float, float]] = field(default_factory=list)  # (started at, queue wait) per answered run
    failed: int = 0
    grew_at: float | None = None
    full_at: float | None = None
    peak_serving: int = 0
    ended_at: float = 0.0
    back_at: float | None = None
    shut_down: int = 0
    created: int = 0
    steps: list[tuple[float, str]] = field(default_factory=list)  # the scaler's log lines, timed


class StepLog(logging.Handler):
    """Times the scaler's own log lines (decided to grow, joined, drained) from the burst's start."""

    def __init__(self, burst: Burst, started: float) -> None:
        super().__init__(logging.INFO)
        self._burst, self._started = burst, started

    def emit(self, record: logging.LogRecord) -> None:
        self._burst.steps.append((record.created - self._started, record.getMessage()))


def devbox_env(fake: FakeRunloopAPI, args: argparse.Namespace, maximum: int) -> dict[str, str]:
    return {
        "SWARM_DEVBOX_INSTANCES": str(args.start),
        "SWARM_DEVBOX_MIN": str(args.start),
        "SWARM_DEVBOX_MAX": str(maximum),
        "SWARM_DEVBOX_MODE": "warm",
        "SWARM_DEVBOX_BLUEPRINT": "qwen-llama-server",
        "SWARM_DEVBOX_PORT": str(PORT),
        "SWARM_DEVBOX_MODEL": MODEL,
        "SWARM_DEVBOX_TUNNEL_URL": fake.tunnel_url,
        "SWARM_DEVBOX_PROBE_INTERVAL_S": "0.05",
        "SWARM_DEVBOX_GROW_QUEUE": "1",
        "SWARM_DEVBOX_GROW_AFTER_S": str(args.grow_after_s),
        "SWARM_DEVBOX_COOLDOWN_S": str(args.cooldown_s),
        "SWARM_DEVBOX_SHRINK_IDLE_S": str(args.shrink_idle_s),
        "SWARM_DEVBOX_SCALE_INTERVAL_S": "0.1",
        "RUNLOOP_API_KEY": fake.api_key,
        "RUNLOOP_BASE_URL": fake.base_url,
        "SWARM_INSTANCE_SLOTS": "1",
        "SWARM_TEST_WRITERS": "0",
        "SWARM_QUEUE_SIZE": str(args.runs + 10),
        "SWARM_QUEUE_TIMEOUT_S": "3600",
        "SWARM_QUEUE_POLL_S": "0.05",
        "SWARM_HEALTH_INTERVAL_S": "0.2",
        "SWARM_INSTANCE_TIMEOUT_S": "60",
        "SWARM_UNHEALTHY_AFTER": "1000000",
    }


async def serving(orch: Orchestrator) -> int:
    """Devbox instances that answer through a tunnel now (a parked or booting one does not)."""
    statuses = (await orch.stub.ListInstances(pb.ListInstancesRequest())).instances
    return sum(1 for s in statuses if s.healthy and ".invalid" not in s.instance.base_url)


async def one_run(orch: Orchestrator, started: float, burst: Burst) -> None:
    request = pb.RunSwarmRequest(task=TASK, swarm_size=1, skip_refine=True)
    sent = time.perf_counter() - started
    try:
        events = [event async for event in orch.stub.RunSwarm(request, timeout=3600.0)]
    except grpc.aio.AioRpcError:
        burst.failed += 1
        return
    if not events or not events[-1].HasField("done"):
        burst.failed += 1
        return
    done = events[-1].done
    wait_s = done.queue_wait_ms / 1000.0
    burst.waits.append((sent + wait_s, wait_s))  # it left the queue when its wait ended


async def watch(orch: Orchestrator, start: int, maximum: int, started: float, burst: Burst) -> None:
    while True:
        count = await serving(orch)
        now = time.perf_counter() - started
        burst.peak_serving = max(burst.peak_serving, count)
        if count > start and burst.grew_at is None:
            burst.grew_at = now
        if count >= maximum and burst.full_at is None and maximum > start:
            burst.full_at = now
        await asyncio.sleep(0.05)


async def run_burst(stages: Stages, url: str, args: argparse.Namespace, maximum: int) -> Burst:
    burst = Burst()
    async with (
        SlowModel(think_s=args.think_ms / 1000.0) as model,
        FakeRunloopAPI(provision_delay_s=args.provision_ms / 1000.0) as fake,
    ):
        fake.serve(PORT, model.port)
        async with orchestrator(stages, "", url, devbox_env(fake, args, maximum)) as orch:
            while await serving(orch) < args.start:  # noqa: ASYNC110 (polled over RPC, as a client would)
                await asyncio.sleep(0.05)
            started = time.perf_counter()
            steps = StepLog(burst, time.time())
            scaler_log = logging.getLogger("swarm_orchestrator.devbox_scaling")
            scaler_log.setLevel(logging.INFO)
            scaler_log.addHandler(steps)
            watcher = asyncio.create_task(watch(orch, args.start, maximum, started, burst))
            await asyncio.gather(*(one_run(orch, started, burst) for _ in range(args.runs)))
            burst.ended_at = time.perf_counter() - started
            if maximum > args.start:
                # Idle now: the grown devboxes drain and go, down to the minimum.
                async with asyncio.timeout(args.shrink_idle_s * 10 + 60):
                    while await serving(orch) > args.start:  # noqa: ASYNC110 (polled over RPC)
                        await asyncio.sleep(0.05)
                burst.back_at = time.perf_counter() - started
            watcher.cancel()
            scaler_log.removeHandler(steps)
            burst.shut_down = sum(1 for status in fake.statuses().values() if status == "shutdown")
            burst.created = len(fake.devboxes)
    return burst


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def rate(waits: Sequence[tuple[float, float]], start: float, end: float) -> float:
    """Runs that left the queue in [start, end), per second."""
    if end <= start or end == float("inf"):
        return 0.0
    return sum(1 for at, _ in waits if start <= at < end) / (end - start)


def waits_line(label: str, waits: Sequence[float]) -> str:
    if not waits:
        return f"  {label}: none"
    return f"  {label}: {len(waits)} runs, wait p50 {statistics.median(waits):.2f} s, p99 {pct(waits, 0.99):.2f} s"


def report(args: argparse.Namespace, scaled: Burst, fixed: Burst | None) -> None:
    print(
        f"{args.runs} runs at once, one answer each, {args.think_ms} ms per answer, one run per devbox at a time; "
        f"pool {args.start} -> {args.max} devboxes (grow when >= 1 run waits for {args.grow_after_s} s, "
        f"cooldown {args.cooldown_s} s, shrink after {args.shrink_idle_s} s idle), fake provisioning "
        f"{args.provision_ms} ms"
    )
    grew = f"{scaled.grew_at:.2f} s" if scaled.grew_at is not None else "never"
    full = f"{scaled.full_at:.2f} s" if scaled.full_at is not None else "never"
    print(f"pool first grew after {grew}, reached {args.max} devboxes after {full} (peak {scaled.peak_serving})")
    for at, line in scaled.steps:
        print(f"  {at:6.2f} s  {line}")
    print(f"burst answered in {scaled.ended_at:.2f} s, {len(scaled.waits)} answered, {scaled.failed} failed")
    cut = scaled.grew_at if scaled.grew_at is not None else float("inf")
    print("queue at the door, growing pool:")
    print(waits_line("started before the first growth", [w for at, w in scaled.waits if at < cut]))
    print(waits_line("started after it", [w for at, w in scaled.waits if at >= cut]))
    print(waits_line("whole burst", [w for _, w in scaled.waits]))
    print(
        f"  runs started per second: {rate(scaled.waits, 0.0, cut):.2f} before the first growth, "
        f"{rate(scaled.waits, scaled.full_at or float('inf'), scaled.ended_at):.2f} at {args.max} devboxes"
    )
    if fixed is not None:
        print(f"queue at the door, fixed pool of {args.start} (same burst): answered in {fixed.ended_at:.2f} s")
        print(waits_line("whole burst", [w for _, w in fixed.waits]))
    back = f"{scaled.back_at - scaled.ended_at:.2f} s" if scaled.back_at is not None else "never"
    print(
        f"after the burst: back to {args.start} devboxes {back} after the last run; "
        f"{scaled.shut_down} of the {scaled.created} devboxes created were shut down by the scaler "
        "(the rest when the orchestrator stopped)"
    )


async def main(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--start", type=int, default=2)
    parser.add_argument("--max", type=int, default=6)
    parser.add_argument("--think-ms", type=int, default=400)
    parser.add_argument("--provision-ms", type=int, default=500)
    parser.add_argument("--grow-after-s", type=float, default=1.0)
    parser.add_argument("--cooldown-s", type=float, default=1.0)
    parser.add_argument("--shrink-idle-s", type=float, default=2.0)
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="swarm-scaling-") as tmp:
        async with stage_servers(env) as stages:
            scaled = await run_burst(stages, f"sqlite+aiosqlite:///{Path(tmp) / 'scaled.db'}", args, args.max)
            fixed = None
            if not args.no_baseline:
                fixed = await run_burst(stages, f"sqlite+aiosqlite:///{Path(tmp) / 'fixed.db'}", args, args.start)
    report(args, scaled, fixed)
    return 0 if scaled.failed == 0 and (fixed is None or fixed.failed == 0) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
