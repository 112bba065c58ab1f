"""The budget's worst overspend under concurrency (must be 0): ``--runs`` runs at once against a
daily budget that fits ``--fits`` runs' upper bounds, ``--rounds`` times, each on a fresh database.

Usage: .venv/bin/python bench/budget.py [--rounds 5] [--runs 50] [--fits 5] [--db sqlite|postgres]

The services run in this process (``swarm_bench.stack``); the instances are priced replay servers
that answer at once, so runs end quickly and, as their reservations settle to their (smaller)
actual cost, later runs fit again. Printed per round: answered and refused runs, the settled spend
against the budget, and whether any refused run reached an instance (the replay server counts
requests; must be none); then the worst overspend over all rounds, ``max(0, settled - budget)``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import uuid
from pathlib import Path

import grpc

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.replay import RUN_HEADER, ReplayRequest, ReplayServer
from swarm_bench.runs import database
from swarm_bench.stack import Orchestrator, orchestrator, stage_servers
from swarm_orchestrator.cost import RunShape, upper_bound_usd
from swarmlib import InstanceSpec

TASK = "Write a Python function add(a, b) that returns the sum of a and b.\n\n>>> add(2, 3)\n5\n"
ANSWER = "```python\ndef add(a, b):\n    return a + b\n```\n"
PRICE_IN, PRICE_OUT, MAX_TOKENS = 1000.0, 2000.0, 256
ENV = {"SWARM_TEST_WRITERS": "0", "SWARM_REFINE": "false", "SWARM_MAX_TOKENS": str(MAX_TOKENS)}


async def one_run(orch: Orchestrator) -> tuple[str, str]:
    """("answered" | "refused" | "failed", run id or status detail)."""
    request = pb.RunSwarmRequest(task=TASK, swarm_size=1)
    events: list[pb.RunSwarmResponse] = []
    try:
        async for event in orch.stub.RunSwarm(request, timeout=300.0):
            events.append(event)
    except grpc.aio.AioRpcError as exc:
        refused = exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and not events
        return ("refused" if refused else "failed"), exc.code().name
    return "answered", events[-1].run_id


async def one_round(args: argparse.Namespace, tmp: Path, budget: float) -> tuple[int, int, int, float, int]:
    solve_runs: set[str] = set()

    def seen(request: ReplayRequest) -> None:
        run_id = request.headers.get(RUN_HEADER, "")
        if request.purpose == "solve" and run_id:
            solve_runs.add(run_id)

    async with (
        ReplayServer(on_request=seen) as replay,
        stage_servers() as stages,
        database(args.db, tmp, prefix=f"swarm_budget_{uuid.uuid4().hex[:6]}") as url,
    ):
        replay.register(TASK, [ANSWER], None)
        instances = [
            {
                "name": "priced",
                "base_url": replay.base_url(0),
                "model": "replay",
                "slots": 16,
                "price_input_per_mtok": PRICE_IN,
                "price_output_per_mtok": PRICE_OUT,
            }
        ]
        env = {**ENV, "SWARM_BUDGET_DAILY_USD": repr(budget)}
        async with orchestrator(stages, json.dumps(instances), url, env, SWARM_UNHEALTHY_AFTER="1000000") as orch:
            outcomes = await asyncio.gather(*(one_run(orch) for _ in range(args.runs)))
            response = await orch.stub.GetBudget(pb.GetBudgetRequest())
    day = next(b for b in response.budgets if b.scope == "caller" and b.period == "day")
    answered = {detail for kind, detail in outcomes if kind == "answered"}
    strays = len(solve_runs - answered)  # instance calls of runs that were not answered
    kinds = [kind for kind, _ in outcomes]
    return kinds.count("answered"), kinds.count("refused"), kinds.count("failed"), day.spent_usd, strays


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--fits", type=float, default=5.5, help="the budget, in runs' upper bounds")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    spec = InstanceSpec(name="p", base_url="", model="", price_input_per_mtok=PRICE_IN, price_output_per_mtok=PRICE_OUT)
    bound = upper_bound_usd(RunShape(TASK, 1, 0, 0, MAX_TOKENS), [spec])
    budget = bound * args.fits
    print(f"{args.rounds} rounds of {args.runs} concurrent runs, {args.db}, budget ${budget:.6f} ({args.fits} bounds)")
    worst = 0.0
    failed = strays_total = 0
    with tempfile.TemporaryDirectory(prefix="swarm-budget-") as tmp:
        for number in range(1, args.rounds + 1):
            answered, refused, failures, spent, strays = await one_round(args, Path(tmp), budget)
            worst = max(worst, spent - budget)
            failed += failures
            strays_total += strays
            print(
                f"  round {number}: answered {answered}, refused {refused}, failed {failures}; settled "
                f"${spent:.6f} of ${budget:.6f}; refused runs that reached an instance: {strays}"
            )
    print(f"Budget: the concurrency test's worst overspend: ${max(0.0, worst):.6f} (must be 0)")
    return 0 if worst <= 0 and strays_total == 0 and failed == 0 else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
