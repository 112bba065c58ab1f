"""What the web path adds: submit → first progress event and submit → final answer, through the
Worker and Envoy against a direct gRPC client, on the same stack in the same process.

Usage: .venv/bin/python bench/web_latency.py [--runs 30] [--size 3]

The stack is ``swarm_bench.web_stack`` (the four services in-process, Envoy, the Worker under
``wrangler dev``) with replay instances that answer at once, so the model does not dominate and
the difference is the path. Runs alternate between the two paths (direct first), each a fresh
``RunSwarm`` of ``--size`` instances without refinement, asking for the instances' text as the
page does. Direct: ``RunSwarm`` on the orchestrator's gRPC port. Web: ``POST /api/runs`` on the
Worker with the API key, read as the SSE stream the page reads. The first event is ``accepted``
on both; the final answer is the ``done`` event. Prints the medians and p90s, and the median of
what the web path adds (target: at most 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.replay import ReplayServer
from swarm_bench.web_stack import WebStack, web_stack

TASK = "Write a Python function add(a, b) that returns the sum of a and b.\n\n>>> add(2, 3)\n5\n"
ANSWER = "```python\ndef add(a, b):\n    return a + b\n```\n"


async def direct(web: WebStack, size: int) -> tuple[float, float]:
    request = pb.RunSwarmRequest(task=TASK, swarm_size=size, skip_refine=True, stream_output=True)
    started = time.perf_counter()
    first = done = 0.0
    async for event in web.orchestrator.stub.RunSwarm(request, timeout=60.0):
        first = first or time.perf_counter() - started
        if event.HasField("done"):
            done = time.perf_counter() - started
            if event.done.status != pb.RUN_STATUS_SUCCEEDED:
                raise RuntimeError(f"direct run ended {pb.RunStatus.Name(event.done.status)}: {event.done.error}")
    return first, done


async def through_the_worker(http: httpx.AsyncClient, web: WebStack, size: int) -> tuple[float, float]:
    body = {"task": TASK, "size": size, "refine": False}
    headers = {"authorization": f"Bearer {web.worker_vars.api_key}"}
    started = time.perf_counter()
    first = done = 0.0
    async with http.stream("POST", f"{web.origin}/api/runs", json=body, headers=headers) as response:
        if response.status_code != 200:
            raise RuntimeError(f"POST /api/runs answered {response.status_code}: {await response.aread()!r}")
        async for line in response.aiter_lines():
            if not line.startswith("data:"):
                continue
            first = first or time.perf_counter() - started
            event = json.loads(line[5:])
            if "done" in event:
                done = time.perf_counter() - started
                if event["done"]["status"] != "RUN_STATUS_SUCCEEDED":
                    raise RuntimeError(f"web run ended {event['done']['status']}: {event['done'].get('error')}")
    return first, done


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else values[0]


def _row(name: str, firsts: list[float], dones: list[float]) -> str:
    return (
        f"{name:<22} first event median {statistics.median(firsts) * 1000:7.1f} ms (p90 {_p90(firsts) * 1000:7.1f}), "
        f"final answer median {statistics.median(dones) * 1000:7.1f} ms (p90 {_p90(dones) * 1000:7.1f})"
    )


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30, help="runs per path (default 30)")
    parser.add_argument("--size", type=int, default=3, help="instances per run, 3..7 (default 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="swarm-web-latency-") as tmp:
        async with ReplayServer() as replay, httpx.AsyncClient(timeout=60.0) as http:
            replay.register(TASK, [ANSWER] * args.size, None)
            instances = [(f"replay-{k}", replay.base_url(k)) for k in range(args.size)]
            async with web_stack(Path(tmp), instances, (replay.base_url(0), "replay"), model="replay") as web:
                await direct(web, args.size)  # warm-up: connections, imports, the embedding model
                await through_the_worker(http, web, args.size)
                paths: dict[str, tuple[list[float], list[float]]] = {
                    "direct gRPC": ([], []),
                    "Worker + Envoy": ([], []),
                }
                for _ in range(args.runs):
                    for name in paths:
                        if name == "direct gRPC":
                            first, done = await direct(web, args.size)
                        else:
                            first, done = await through_the_worker(http, web, args.size)
                        paths[name][0].append(first)
                        paths[name][1].append(done)
    print(f"{args.runs} runs per path, {args.size} replay instances answering at once, refinement off")
    for name, (firsts, dones) in paths.items():
        print(_row(name, firsts, dones))
    (d_first, d_done), (w_first, w_done) = paths["direct gRPC"], paths["Worker + Envoy"]
    added_first = statistics.median(w_first) - statistics.median(d_first)
    added_done = statistics.median(w_done) - statistics.median(d_done)
    print(
        f"the web path adds {added_first * 1000:.1f} ms to the first event and {added_done * 1000:.1f} ms to the "
        f"final answer at the median (target: at most 50 ms)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
