"""What the warm pool buys: time to the first execution with a warm pool and with a cold one.

Usage: .venv/bin/python bench/runloop_pool.py [--provision-ms 500] [--trials 3] [--runs 20]

Runs the Runloop sandbox against the fake Runloop API (libs/swarm_bench/fake_runloop.py, started in
process) through the real SDK. A cold pool boots a devbox when the first program arrives; a warm
one booted it beforehand (as the assessor does after its start-up probe). ``--provision-ms`` is how
long the fake keeps a new devbox provisioning; real devboxes take seconds to minutes, so the
cold figure here is a floor. Per-execution overhead is the wall time of ``run()`` minus the
program's own time measured on the devbox, i.e. the API round trips and the shell around the
program; against the real API each round trip also pays network latency. The overhead is given
for a bare program and for an assessor's execution (the sandbox runner with its input file, one
candidate and one test), which writes one file more.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Mapping

from swarm_assessor.harness import Plan, build_execution, build_spec
from swarm_assessor.tests_from_task import TaskTest
from swarm_bench.fake_runloop import FakeRunloopAPI
from swarmlib import RunloopConfig, SandboxConfig
from swarmlib._sandbox_runloop import RunloopSandbox

PROGRAM = "print(sum(range(1000)))\n"
CANDIDATE = "def total(n):\n    return sum(range(n))\n"
TEST = TaskTest(name="assert 1", kind="assert", source="assert total(1000) == 499500")


def assessor_execution() -> tuple[str, dict[str, str]]:
    """The program and files of one assessor execution of ``CANDIDATE`` against ``TEST``."""
    plan = Plan([TEST], ["total(1000)"], ["total"], "total", 1.0, 0.5, 0.5, 4.0)
    execution = build_execution(CANDIDATE, build_spec(plan))
    return execution.program, execution.files


def _config(fake: FakeRunloopAPI, pool_size: int) -> SandboxConfig:
    runloop = RunloopConfig(api_key=fake.api_key, base_url=fake.base_url, pool_size=pool_size, max_devboxes=4)
    return SandboxConfig(backend="runloop", runloop=runloop)


async def first_execution(fake: FakeRunloopAPI, *, warm: bool) -> float:
    """Seconds from a program arriving to its result, on a fresh sandbox."""
    sandbox = RunloopSandbox(_config(fake, pool_size=1 if warm else 0), maintenance=False)
    try:
        if warm:
            await sandbox.warm_up()
        started = time.perf_counter()
        result = await sandbox.run(PROGRAM, 10.0)
        elapsed = time.perf_counter() - started
        if result.stdout != "499500\n":
            raise RuntimeError(f"unexpected result: {result}")
        return elapsed
    finally:
        await sandbox.aclose()


async def overhead(
    fake: FakeRunloopAPI, runs: int, program: str = PROGRAM, files: Mapping[str, str] | None = None
) -> tuple[list[float], float]:
    """Per-execution overhead in ms on a warm pool, and API requests per execution."""
    sandbox = RunloopSandbox(_config(fake, pool_size=1), maintenance=False)
    try:
        await sandbox.warm_up()
        await sandbox.run(program, 10.0, files)  # the first one pays for imports and connections
        await sandbox.wait_idle()
        before = len(fake.requests)
        spent: list[float] = []
        for _ in range(runs):
            started = time.perf_counter()
            result = await sandbox.run(program, 10.0, files)
            if result.exit_code != 0:
                raise RuntimeError(f"unexpected result: {result}")
            spent.append((time.perf_counter() - started) * 1000.0 - result.duration_ms)
            await sandbox.wait_idle()
        return spent, (len(fake.requests) - before) / runs
    finally:
        await sandbox.aclose()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--provision-ms", type=float, default=500.0, help="fake devbox provisioning time")
    parser.add_argument("--trials", type=int, default=3, help="first executions timed per pool kind")
    parser.add_argument("--runs", type=int, default=20, help="executions timed for the overhead")
    args = parser.parse_args()
    async with FakeRunloopAPI(provision_delay_s=args.provision_ms / 1000.0) as fake:
        await first_execution(fake, warm=True)  # imports, TLS context, first connections
        cold = [await first_execution(fake, warm=False) for _ in range(args.trials)]
        warm = [await first_execution(fake, warm=True) for _ in range(args.trials)]
        spent, calls = await overhead(fake, args.runs)
        assessed, assessed_calls = await overhead(fake, args.runs, *assessor_execution())
    print(f"fake Runloop API, provisioning {args.provision_ms:g} ms; median of {args.trials} trials")
    print(f"time to first execution, cold pool: {statistics.median(cold) * 1000:7.1f} ms")
    print(f"time to first execution, warm pool: {statistics.median(warm) * 1000:7.1f} ms")
    print(
        f"per-execution overhead over {args.runs} runs: median {statistics.median(spent):.1f} ms, "
        f"max {max(spent):.1f} ms, {calls:.1f} API requests per execution (cleanup included)"
    )
    print(
        f"an assessor's execution (runner + input file): median {statistics.median(assessed):.1f} ms, "
        f"max {max(assessed):.1f} ms, {assessed_calls:.1f} API requests per execution"
    )
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
