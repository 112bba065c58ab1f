"""Per-execution overhead of the local (bubblewrap) sandbox: a trivial program, cold and warm.

Usage: .venv/bin/python bench/sandbox_overhead.py [--runs 100] [--gap-ms 100]

The program is ``pass``, so an execution's wall time (``run`` called to ``run`` returned, which
includes waiting until every process of the sandbox is gone) is all overhead. Three rows:

* cold: no warm pool, every execution starts bubblewrap and the interpreter;
* warm: the service's default pool (one spare per slot), executions ``--gap-ms`` apart, so a
  replacement is ready for each, as when requests arrive at a sustainable rate;
* warm back-to-back: no gap, so replacements are started while executions run and some
  executions wait for one: what a burst larger than the pool sees.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time

from swarmlib import SandboxConfig
from swarmlib._sandbox_local import LocalSandbox, default_pool_size


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def measure(pool_size: int, runs: int, gap_s: float) -> list[float]:
    sandbox = LocalSandbox(SandboxConfig(), pool_size=pool_size)
    await sandbox.probe()
    samples = []
    try:
        await asyncio.sleep(0.5)  # let the pool start
        for _ in range(runs):
            if gap_s:
                await asyncio.sleep(gap_s)
            started = time.perf_counter()
            result = await sandbox.run("pass\n", 10.0)
            samples.append((time.perf_counter() - started) * 1000.0)
            if result.exit_code != 0:
                raise RuntimeError(f"the trivial program failed: {result}")
    finally:
        await sandbox.aclose()
    return samples


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--gap-ms", type=float, default=100.0)
    args = parser.parse_args()
    pool = default_pool_size(SandboxConfig())
    print(f"{os.cpu_count()} cores, uid {os.geteuid()}, {args.runs} runs of `pass` per row, warm pool of {pool}")
    rows = [
        ("cold", 0, args.gap_ms / 1000.0),
        ("warm", pool, args.gap_ms / 1000.0),
        ("warm back-to-back", pool, 0.0),
    ]
    print(f"{'':<20}{'median ms':>10}{'p99 ms':>10}{'min ms':>10}")
    for name, size, gap in rows:
        samples = await measure(size, args.runs, gap)
        print(f"{name:<20}{statistics.median(samples):>10.1f}{_p99(samples):>10.1f}{min(samples):>10.1f}")


if __name__ == "__main__":
    asyncio.run(main())
