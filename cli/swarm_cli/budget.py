"""``swarm run --estimate`` and ``swarm budget``: what a run would cost, and what the caller has
spent against its budgets (docs/budgets.md)."""

from __future__ import annotations

from typing import TextIO

from swarm.v1 import orchestrator_pb2 as pb


def estimate_request(run: pb.RunSwarmRequest) -> pb.EstimateRunRequest:
    """The fields of a run that decide its cost."""
    return pb.EstimateRunRequest(
        task=run.task,
        swarm_size=run.swarm_size,
        instances=run.instances,
        skip_refine=run.skip_refine,
        tests=run.tests,
        adaptive=run.adaptive,
    )


def _left(usd: float) -> str:
    return "no budget" if usd < 0 else f"${usd:.6f}"


def render_estimate(reply: pb.EstimateRunResponse, out: TextIO) -> None:
    print(f"estimate for {reply.swarm_size} answer slot(s) (nothing was run):", file=out)
    for row in reply.instances:
        print(
            f"  {row.instance:<12} {row.slots} slot(s)  in {row.input_tokens} tok ({row.input_tokens_source})  "
            f"out ~{row.expected_output_tokens:.0f} tok ({row.output_tokens_source})  "
            f"${row.price_input_per_mtok:g}/${row.price_output_per_mtok:g} per Mtok  ~${row.expected_cost_usd:.6f}",
            file=out,
        )
    print(f"expected cost: ${reply.expected_cost_usd:.6f} (answers, test writing, one refinement round)", file=out)
    if reply.adaptive_start:
        print(
            f"adaptive:      ${reply.first_round_cost_usd:.6f} if the first {reply.adaptive_start} answers settle it; "
            f"the lines above are for all {reply.swarm_size}",
            file=out,
        )
    print(f"upper bound:   ${reply.upper_bound_usd:.6f} (what a budget reserves for the run)", file=out)
    print(
        f"budget left:   today {_left(reply.remaining_daily_usd)}, this month {_left(reply.remaining_monthly_usd)}",
        file=out,
    )


def render_budget(reply: pb.GetBudgetResponse, out: TextIO) -> None:
    for use in reply.budgets:
        used = f"${use.spent_usd:.6f} spent, ${use.reserved_usd:.6f} reserved"
        if use.limit_usd > 0:
            left = max(0.0, use.limit_usd - use.spent_usd - use.reserved_usd)
            shown = f"{used} of ${use.limit_usd:.6f} (${left:.6f} left, {100 * left / use.limit_usd:.0f} %)"
        else:
            shown = f"{used} (no limit)"
        print(f"{use.scope:<6} {use.name:<30} {'today' if use.period == 'day' else 'this month':<10} {shown}", file=out)
