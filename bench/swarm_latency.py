"""Time real swarm runs on the local stack: total wall time and where it goes.

Usage: .venv/bin/python bench/swarm_latency.py [--runs 5] [--layout shared|separate] [--instances 3]
       [--threads 0] [--task "..."]

Starts `swarm up`'s stack (real Qwen instances via xllamacpp, the four services), runs the task
``--runs`` times through the orchestrator, prints each run's stage times from the event stream
and the median, then stops the stack. The brief's target for the demo is under 30 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarm_cli.localstack import LocalStack, StackSettings
from swarmlib import bearer_interceptors

DEFAULT_TASK = "Write a Python function fib(n) that returns the n-th Fibonacci number (fib(0) == 0, fib(1) == 1)."
ROOT = Path(__file__).resolve().parent.parent


async def one_run(stub: orchestrator_pb2_grpc.OrchestratorServiceStub, task: str) -> dict[str, float]:
    started = time.perf_counter()
    marks: dict[str, float] = {}
    async for event in stub.RunSwarm(pb.RunSwarmRequest(task=task, swarm_size=0)):
        kind = event.WhichOneof("event") or ""
        marks[kind] = time.perf_counter() - started
        if kind == "done" and event.done.status != pb.RUN_STATUS_SUCCEEDED:
            raise RuntimeError(event.done.error)
    # marks hold the last event of each kind: the last instance_finished closes the fan-out;
    # assessment starts once the answers and the swarm's own tests are in, collation follows it.
    return {
        "fan-out": marks["instance_finished"] - marks["accepted"],
        "tests+assess": marks["assessed"] - marks["instance_finished"],
        "collate": marks["collated"] - marks["assessed"],
        "refine": marks["refined"] - marks["collated"],
        "total": marks["done"],
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layout", choices=["shared", "separate"], default="shared")
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--task", default=DEFAULT_TASK)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="swarm-bench-"))
    (home / "models").symlink_to(ROOT / ".swarm" / "models", target_is_directory=True)
    threads = args.threads or ((os.cpu_count() or 1) if args.layout == "shared" else 1)
    settings = StackSettings(
        home=home,
        instances=args.instances,
        model="qwen2.5-coder-0.5b-instruct",
        first_instance_port=18181,
        threads=threads,
        layout=args.layout,
    )
    env = dict(os.environ)
    stack = LocalStack(settings, service_ports={"orchestrator": 50151, "collator": 50152, "assessor": 50153,
                                                "refiner": 50154})  # fmt: skip
    try:
        started = time.perf_counter()
        targets = await stack.start(env)
        print(f"stack up in {time.perf_counter() - started:.1f}s ({args.layout}, {args.instances} instances, "
              f"{threads} thread(s) per server)")  # fmt: skip
        keyed = bearer_interceptors(stack.cli_key)
        async with grpc.aio.insecure_channel(targets["orchestrator"], interceptors=keyed) as channel:
            stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
            totals = []
            for index in range(args.runs):
                times = await one_run(stub, args.task)
                totals.append(times["total"])
                shown = "  ".join(f"{k} {v:5.1f}s" for k, v in times.items())
                print(f"run {index + 1}: {shown}", flush=True)
        print(f"median total {statistics.median(totals):.1f}s, first {totals[0]:.1f}s, max {max(totals):.1f}s "
              f"over {len(totals)} runs")  # fmt: skip
    finally:
        await stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
