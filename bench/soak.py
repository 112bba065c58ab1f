"""Soak: minutes of runs at a steady concurrency through the real services, with instances that
fail at random; what share of the runs is answered, and does anything leak or stay RUNNING?

Usage: .venv/bin/python bench/soak.py [--minutes 20] [--concurrency 4] [--size 3] [--instances 4]
       [--fault-rate 0.07] [--seed 1] [--db sqlite|postgres] [-e NAME=VALUE ...]

The orchestrator, collator, assessor and refiner run in this process on ephemeral ports
(``swarm_bench.stack``, as bench/load.py runs them) with their default settings, except the
stack's short instance deadline (``SWARM_INSTANCE_TIMEOUT_S=3``). The instances are
``swarm_bench.faulty`` servers: each chat request fails with probability ``--fault-rate``,
spread evenly over every kind (HTTP 500, 503, 429, a hang past the instance deadline, garbage in
the stream, a stream without [DONE], one cut mid-answer, a reset connection, an empty answer);
the rest answer right, or one time in five with a wrong solution, so that some runs refine.
``--concurrency`` workers each send a run (``--size`` instances, refinement on) as soon as their
last one ended, until ``--minutes`` have passed.

Printed: runs sent, answered (SUCCEEDED / NEEDS_APPROVAL), failed by reason, refused up front,
the share answered (target >= 99.5 %), p50/p99 of an answered run's wall time, this process's
RSS after the warm-up and at the end, the faults the instances served, the faults each failed
run met, and the stored runs still RUNNING after the soak (must be 0). A progress line a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.faulty import Fault, FaultRates, FaultyLLMServer
from swarm_bench.runs import Outcome, database, one_run, pct, rss_mb, stored_running
from swarm_bench.stack import ORCHESTRATOR_DEFAULTS, Orchestrator, instances_json, orchestrator, stage_servers
from swarm_orchestrator.prompts import SOLVE_SYSTEM
from swarm_orchestrator.tests_writer import TESTS_SYSTEM

TASK = "Write a Python function add(a, b) that returns the sum of a and b.\n\n>>> add(2, 3)\n5\n>>> add(-1, 1)\n0\n"
RIGHT = "Here it is:\n\n```python\ndef add(a, b):\n    return a + b\n```\n"
WRONG = "Here it is:\n\n```python\ndef add(a, b):\n    return a - b\n```\n"
ASSERTS = "assert add(2, 3) == 5\nassert add(0, 0) == 0\nassert add(-1, 1) == 0\nassert add(10, 5) == 15\n"
WRONG_SHARE = 0.2


def model_reply(seed: int) -> Callable[[list[dict[str, object]]], str]:
    """A solution (one time in five a wrong one), assert lines for the test writer, a right rewrite."""
    rng = random.Random(seed)

    def reply(messages: list[dict[str, object]]) -> str:
        system = next((m.get("content") for m in messages if m.get("role") == "system"), "")
        if system == SOLVE_SYSTEM:
            return WRONG if rng.random() < WRONG_SHARE else RIGHT
        return ASSERTS if system == TESTS_SYSTEM else RIGHT

    return reply


def failed_reason(outcome: Outcome) -> str:
    """A failed run's reason, without its run-specific details."""
    reason = outcome.error.split(":")[0] if outcome.error else outcome.detail
    return f"{outcome.detail}: {reason}"


async def soak(orch: Orchestrator, request: pb.RunSwarmRequest, minutes: float, concurrency: int) -> list[Outcome]:
    outcomes: list[Outcome] = []
    started = time.monotonic()
    ends = started + minutes * 60.0

    async def worker() -> None:
        while time.monotonic() < ends:
            outcomes.append(await one_run(orch, request))

    async def progress() -> None:
        while True:
            await asyncio.sleep(60.0)
            kinds = collections.Counter(o.kind for o in outcomes)
            elapsed = (time.monotonic() - started) / 60.0
            print(
                f"  {elapsed:5.1f} min: {len(outcomes)} runs, answered {kinds['answered']}, failed {kinds['failed']}, "
                f"refused {kinds['refused']}, RSS {rss_mb():.0f} MB",
                flush=True,
            )

    reporter = asyncio.create_task(progress())
    try:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        reporter.cancel()
    return outcomes


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--size", type=int, default=3)
    parser.add_argument("--instances", type=int, default=4)
    parser.add_argument("--fault-rate", type=float, default=0.07)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("-e", dest="env", action="append", default=[], help="NAME=VALUE for every service")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    rates = FaultRates.uniform(args.fault_rate)
    timeout_s = float(env.get("SWARM_INSTANCE_TIMEOUT_S", ORCHESTRATOR_DEFAULTS["SWARM_INSTANCE_TIMEOUT_S"]))
    request = pb.RunSwarmRequest(task=TASK, swarm_size=args.size)
    with tempfile.TemporaryDirectory(prefix="swarm-soak-") as tmp:
        async with AsyncExitStack() as stack:
            servers = [
                await stack.enter_async_context(
                    FaultyLLMServer(f"faulty-{k}", model_reply(args.seed + k), rates, args.seed + k, 3 * timeout_s)
                )
                for k in range(args.instances)
            ]
            stages = await stack.enter_async_context(stage_servers(env))
            url = await stack.enter_async_context(database(args.db, Path(tmp), "swarm_soak"))
            instances = instances_json([(s.name, s.base_url) for s in servers])
            orch = await stack.enter_async_context(orchestrator(stages, instances, url, env))
            await one_run(orch, request)  # warm-up: imports, the embedding model, connections
            rss_start = rss_mb()
            print(
                f"soak: {args.minutes:g} min, {args.concurrency} runs at a time of {args.size} of {args.instances} "
                f"faulty instances ({args.fault_rate:.0%} faults per request), refinement on, {args.db}, "
                f"{' '.join(args.env) or 'default settings'}",
                flush=True,
            )
            started = time.monotonic()
            outcomes = await soak(orch, request, args.minutes, args.concurrency)
            soak_s = time.monotonic() - started
            await asyncio.sleep(2.0)  # runs whose client failed finish in the background
            running, stored = await stored_running(orch)
            rss_end = rss_mb()
    return report(outcomes, servers, soak_s, rss_start, rss_end, running, stored)


def report(
    outcomes: list[Outcome],
    servers: list[FaultyLLMServer],
    soak_s: float,
    rss_start: float,
    rss_end: float,
    running: int,
    stored: int,
) -> int:
    kinds = collections.Counter(o.kind for o in outcomes)
    answered = [o for o in outcomes if o.kind == "answered"]
    share = len(answered) / len(outcomes) if outcomes else float("nan")
    print(f"runs sent {len(outcomes)} in {soak_s / 60:.1f} min ({len(outcomes) / soak_s:.2f} runs/s)")
    print(f"answered {kinds['answered']}, failed {kinds['failed']}, refused up front {kinds['refused']}")
    statuses = collections.Counter(o.detail for o in answered)
    print("  answered: " + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))
    for reason, count in collections.Counter(failed_reason(o) for o in outcomes if o.kind == "failed").most_common():
        print(f"  failed {count:4d}  {reason}")
    print(f"share answered: {share:.2%} (target >= 99.5 %)")
    if answered:
        walls = [o.wall_s for o in answered]
        print(f"answered run wall time p50 {statistics.median(walls):.2f} s, p99 {pct(walls, 0.99):.2f} s")
    print(f"RSS of this process (all four services): {rss_start:.0f} MB after warm-up, {rss_end:.0f} MB at the end")
    faults = collections.Counter(record.fault for server in servers for record in server.log)
    requests = sum(faults.values())
    print(
        f"instance requests {requests}, faulty {requests - faults[Fault.NONE]}: "
        + ", ".join(f"{f.value} {faults[f]}" for f in Fault if f is not Fault.NONE)
    )
    by_run: dict[str, list[Fault]] = collections.defaultdict(list)
    for server in servers:
        for record in server.log:
            if record.run_id and record.purpose == "solve":
                by_run[record.run_id].append(record.fault)
    for outcome in (o for o in outcomes if o.kind == "failed"):
        met = collections.Counter(f.value for f in by_run.get(outcome.run_id, []))
        print(f"  failed run {outcome.run_id}: its solve requests met {dict(met)}; {outcome.error[:200]}")
    lost = "  <- lost" if running else ""
    print(f"stored runs: {stored} (1 warm-up), still RUNNING after the soak: {running}{lost}")
    return 0 if running == 0 and share >= 0.995 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
