"""200 runs at once through the real services: is every one answered or refused up front, and what
does the swarm itself cost?

Usage: .venv/bin/python bench/load.py [--runs 200] [--size 3] [--db sqlite|postgres] [-e NAME=VALUE ...]

The orchestrator, collator, assessor and refiner run in this process on ephemeral ports
(``swarm_bench.stack``) with their default settings; the instances are replay servers that
answer at once, so what is measured is the swarm, not a model. ``--runs`` ``RunSwarm`` calls of
``--size`` instances each (refinement off) are sent together. Each call ends one of three ways:

* **answered**: the stream ends with its ``done`` event (status SUCCEEDED or NEEDS_APPROVAL);
* **refused up front**: ``RESOURCE_EXHAUSTED`` before the run was accepted (nothing stored);
* **failed half-way**: anything else (a run accepted and then failed, ``UNKNOWN``, a broken stream).

Printed: the counts by outcome and status, throughput (answered runs per second of the burst),
the p50/p99 of each answered run's wall time and of the swarm's own overhead (wall time minus the
wait in the queue at the door, the slowest instance's generation and the assessment, i.e. the
orchestrator, the collator, the store and the gates), how long runs waited in the queue at the
door and how deep it got, the process's peak RSS, and, after the burst, how many stored runs are
still RUNNING (must be 0) and whether every accepted run is stored with a terminal status.
``-e`` sets an environment variable of every service (e.g. ``-e SWARM_ASSESSOR_MAX_QUEUED=1000``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.replay import ReplayServer
from swarm_bench.runs import database, one_run, pct, stored_running
from swarm_bench.stack import instances_json, orchestrator, stage_servers

TASK = "Write a Python function add(a, b) that returns the sum of a and b.\n\n>>> add(2, 3)\n5\n"
ANSWER = "```python\ndef add(a, b):\n    return a + b\n```\n"


def request(size: int) -> pb.RunSwarmRequest:
    return pb.RunSwarmRequest(task=TASK, swarm_size=size, skip_refine=True)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--size", type=int, default=3)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("-e", dest="env", action="append", default=[], help="NAME=VALUE for every service")
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    with tempfile.TemporaryDirectory(prefix="swarm-load-") as tmp:
        async with (
            ReplayServer() as replay,
            stage_servers(env) as stages,
            database(args.db, Path(tmp), prefix="swarm_load") as url,
        ):
            replay.register(TASK, [ANSWER] * args.size, None)
            instances = instances_json([(f"replay-{k}", replay.base_url(k)) for k in range(args.size)])
            # Replay instances never get sick; a run refused by the swarm must not bench them.
            async with orchestrator(stages, instances, url, env, SWARM_UNHEALTHY_AFTER="1000000") as orch:
                await one_run(orch, request(args.size))  # warm-up: imports, the embedding model, connections
                started = time.perf_counter()
                outcomes = await asyncio.gather(*(one_run(orch, request(args.size)) for _ in range(args.runs)))
                burst_s = time.perf_counter() - started
                await asyncio.sleep(1.0)  # runs whose client failed finish in the background
                running, stored = await stored_running(orch)
    answered = [o for o in outcomes if o.kind == "answered"]
    kinds = collections.Counter(o.kind for o in outcomes)
    details = collections.Counter(f"{o.kind}: {o.detail}" for o in outcomes)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    settings = " ".join(args.env) or "default settings"
    print(f"{args.runs} concurrent runs of {args.size} replay instances, refinement off, {args.db}, {settings}")
    print(
        f"answered {kinds['answered']}, refused up front {kinds['refused']}, failed half-way {kinds['failed']} "
        f"in {burst_s:.1f} s: {len(answered) / burst_s:.2f} answered runs/s"
    )
    for line, count in sorted(details.items()):
        print(f"  {count:4d}  {line}")
    if answered:
        walls = [o.wall_s for o in answered]
        overheads = [o.overhead_s for o in answered]
        waits = [o.queue_wait_s for o in answered]
        print(
            f"run wall time p50 {statistics.median(walls):.2f} s, p99 {pct(walls, 0.99):.2f} s; swarm overhead "
            f"p50 {statistics.median(overheads) * 1000:.0f} ms, p99 {pct(overheads, 0.99) * 1000:.0f} ms"
        )
        print(
            f"queue at the door: {sum(1 for w in waits if w > 0.01)} runs waited, wait p50 "
            f"{statistics.median(waits):.2f} s, p99 {pct(waits, 0.99):.2f} s; deepest queue seen "
            f"{max(o.deepest_queue for o in answered)}"
        )
    print(f"peak RSS of this process (all four services): {peak_mb:.0f} MB")
    warmup = 1
    print(
        f"stored runs: {stored} ({stored - warmup} from the burst), still RUNNING after it: {running}"
        + ("  <- lost runs" if running else "")
    )
    return 0 if kinds["failed"] == 0 and running == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
