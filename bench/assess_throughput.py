"""Assessment throughput: 100 candidates x 20 tests through a real assessor server over gRPC.

Usage: .venv/bin/python bench/assess_throughput.py [--candidates 100] [--repeats 3]

Starts the assessor in this process on an ephemeral port (its defaults: one sandbox slot and
one warm sandbox per core, mutated probes on), waits for its warm pool, then sends the
candidates split into requests of at most ``max_candidates``, all at once, and prints the wall
time from the first request sent to the last response received (target: 20 s on 2 cores).
``max_queued`` is raised so the whole burst is admitted instead of partly refused with
RESOURCE_EXHAUSTED; nothing else differs from a default server.

Where the time goes is printed too: the CPU this process used (the gRPC server and client,
test instrumentation, report parsing, scoring) against the CPU the whole machine was busy with,
of which the rest is the sandboxes (bubblewrap, interpreter start-up, the tests themselves) or
whatever else runs on the host. Run it as the init of a pid namespace (``unshare -pf
--mount-proc .venv/bin/python bench/assess_throughput.py``) to split the two: each sandbox's
namespace init is then re-parented to this process and reaped by it, so their CPU is counted as
this process's children's.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time

import grpc

from swarm.v1 import assessor_pb2, assessor_pb2_grpc, common_pb2
from swarm_assessor.config import AssessorConfig
from swarm_assessor.server import create_server

CASES = [
    ([], 0),
    ([2], 4),
    ([1], 0),
    ([1, 2, 3, 4], 20),
    ([-2, -1, 0], 4),
    ([10], 100),
    ([2, 2, 2], 12),
    ([7, 9, 11], 0),
    ([0, 0], 0),
    ([6, 8], 100),
    ([1, 2, 3, 4, 5, 6], 56),
    ([100, -100], 20000),
    ([3, 4, 5], 16),
    ([12], 144),
    ([-4], 16),
    ([1, 3, 5, 8], 64),
    ([2, 4, 6, 8, 10], 220),
    ([11, 13, 14], 196),
    ([20, 1], 400),
    (list(range(10)), 120),
]
TASK = (
    "def sum_even_squares(nums: list[int]) -> int:\n"
    '    """Return the sum of the squares of the even numbers in nums.\n\n'
    + "".join(f"    >>> sum_even_squares({args!r})\n    {want}\n" for args, want in CASES)
    + '    """\n'
)
BODIES = [
    "    return sum(x * x for x in {v} if x % 2 == 0)\n",
    "    total = 0\n    for x in {v}:\n        if x % 2 == 0:\n            total += x * x\n    return total\n",
    "    return sum(map(lambda x: x * x, filter(lambda x: not x % 2, {v})))\n",
    "    return sum(x * x for x in {v})\n",  # wrong: odd numbers too
    "    return sum(x * x for x in {v} if x % 2)\n",  # wrong: odd numbers only
]


def candidates(count: int) -> list[common_pb2.CandidateCode]:
    """``count`` distinct candidates: five behaviours, each under many parameter names."""
    found = []
    for index in range(count):
        name = f"values_{index}"
        body = BODIES[index % len(BODIES)].format(v=name)
        code = f"def sum_even_squares({name}: list[int]) -> int:\n    # variant {index}\n{body}"
        found.append(common_pb2.CandidateCode(id=f"c{index}", code=code))
    return found


def _busy_seconds() -> float:
    """Core-seconds the machine has spent not idle, from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as stat:
        fields = [int(v) for v in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


async def burst(stub: assessor_pb2_grpc.AssessorServiceStub, batch: list[list[common_pb2.CandidateCode]]) -> float:
    started = time.perf_counter()
    requests = [assessor_pb2.AssessRequest(run_id=f"b{i}", task=TASK, candidates=part) for i, part in enumerate(batch)]
    replies = await asyncio.gather(*(stub.Assess(request) for request in requests))
    wall = time.perf_counter() - started
    assessed = [a for reply in replies for a in reply.assessments]
    passed = sum(a.scores.tests_passed == a.scores.tests_total for a in assessed)
    broken = [a.error for a in assessed if a.error]
    if broken or passed != sum(1 for i in range(len(assessed)) if i % len(BODIES) < 3):
        raise RuntimeError(f"unexpected verdicts: {passed} passing, errors {broken[:3]}")
    if any(reply.tests_found != len(CASES) for reply in replies):
        raise RuntimeError(f"expected {len(CASES)} tests per candidate")
    return wall


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = AssessorConfig(address="127.0.0.1:0", max_queued=max(AssessorConfig.max_queued, args.candidates))
    server, port = await create_server(config)
    await server.start()
    pool = candidates(args.candidates)
    size = config.max_candidates
    batch = [pool[i : i + size] for i in range(0, len(pool), size)]
    print(
        f"{os.cpu_count()} cores; {args.candidates} candidates x {len(CASES)} tests in {len(batch)} concurrent "
        f"requests (max_candidates {size}); {config.sandbox.max_slots} sandbox slots, "
        f"{config.max_concurrency} executions at once, mutated probes {config.mutated_probes}"
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = assessor_pb2_grpc.AssessorServiceStub(channel)
            walls = []
            for repeat in range(args.repeats):
                await asyncio.sleep(1.0)  # the warm pool refills between bursts
                busy, own = _busy_seconds(), _cpu_seconds(resource.RUSAGE_SELF)
                boxes = _cpu_seconds(resource.RUSAGE_CHILDREN)
                wall = await burst(stub, batch)
                busy, own = _busy_seconds() - busy, _cpu_seconds(resource.RUSAGE_SELF) - own
                boxes = _cpu_seconds(resource.RUSAGE_CHILDREN) - boxes
                walls.append(wall)
                where = (
                    f"sandboxes {boxes:.1f}, other host load and kernel threads {busy - own - boxes:.1f}"
                    if os.getpid() == 1
                    else f"sandboxes and other host load {busy - own:.1f}"
                )
                print(
                    f"burst {repeat + 1}: {wall:.2f} s wall; machine busy {busy:.1f} core-s: this process "
                    f"(server + client) {own:.1f}, {where}"
                )
    finally:
        await server.stop(0)
    print(f"median wall time: {statistics.median(walls):.2f} s (target 20 s)")


if __name__ == "__main__":
    asyncio.run(main())
