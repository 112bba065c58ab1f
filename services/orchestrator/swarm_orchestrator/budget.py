"""Budgets at the door: a run reserves its upper bound before anything is called, or is refused
(``BudgetExceededError``, RESOURCE_EXHAUSTED) or shrunk to fewer answer slots when it allows it;
its end settles the reservation to what it cost. The ledger and its lock: ``store_budget``; the
bound: ``cost``; the policy in prose: docs/budgets.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from swarm.v1 import orchestrator_pb2 as pb
from swarmlib import BudgetExceededError, InstanceSpec

from .budget_config import Budgets, Limits
from .cost import RunShape, largest_fitting, upper_bound_usd
from .store_budget import BudgetStore, Ledger, Spend

_RESETS = {"day": "00:00 UTC tomorrow", "month": "the 1st of next month, UTC"}
_VARIABLES = {"day": "SWARM_BUDGET_DAILY_USD", "month": "SWARM_BUDGET_MONTHLY_USD"}


@dataclass(frozen=True)
class Room:
    """The tightest limit a run must fit: USD left, and the sentence that names it."""

    usd: float
    why: str


def rooms(ledger: Ledger, caller: str, tenant: str, budgets: Budgets, max_cost_usd: float) -> list[Room]:
    """Every limit that applies to a run of ``caller`` now, with what is left of it."""
    found: list[Room] = []
    if max_cost_usd > 0:
        found.append(Room(max_cost_usd, f"the run's max_cost_usd is ${max_cost_usd:.6f}"))
    scopes: list[tuple[str, str, Limits, Spend, Spend]] = [
        ("caller", caller, budgets.for_caller(caller), ledger.caller_day, ledger.caller_month),
        ("tenant", tenant, budgets.for_tenant(tenant), ledger.tenant_day, ledger.tenant_month),
    ]
    for scope, name, limits, day, month in scopes:
        for period, spend in (("day", day), ("month", month)):
            limit = limits.of(period)
            if limit <= 0:
                continue
            why = (
                f"{scope} {name} has spent ${spend.spent_usd:.6f} and holds ${spend.reserved_usd:.6f} for runs in "
                f"flight of its {'daily' if period == 'day' else 'monthly'} budget of ${limit:.6f} "
                f"(it resets at {_RESETS[period]}; {_who_raises(scope, period)})"
            )
            found.append(Room(limit - spend.total, why))
    return found


def _who_raises(scope: str, period: str) -> str:
    key = "daily_usd" if period == "day" else "monthly_usd"
    if scope == "tenant":
        return f'the operator raises it as "tenants" -> {key} in SWARM_BUDGETS_FILE'
    return f'the operator raises it with {_VARIABLES[period]} or "callers" -> {key} in SWARM_BUDGETS_FILE'


class Reservation:
    """The decision of one run's reservation, made inside the ledger's locked transaction: how
    much to hold and, when the run was shrunk, its new number of answer slots."""

    def __init__(
        self,
        shape: RunShape,
        specs: Sequence[InstanceSpec],
        *,
        caller: str,
        tenant: str,
        budgets: Budgets,
        max_cost_usd: float,
        allow_shrink: bool,
    ) -> None:
        self._shape = shape
        self._specs = specs
        self._caller = caller
        self._tenant = tenant
        self._budgets = budgets
        self._max_cost = max_cost_usd
        self._shrink = allow_shrink
        self.slots = shape.slots
        self.bound_usd = upper_bound_usd(shape, specs)

    def __call__(self, ledger: Ledger) -> float:
        limits = rooms(ledger, self._caller, self._tenant, self._budgets, self._max_cost)
        bound = upper_bound_usd(self._shape, self._specs)
        tightest = min(limits, key=lambda room: room.usd, default=None)
        if tightest is None or bound <= tightest.usd:
            self.slots, self.bound_usd = self._shape.slots, bound
            return bound
        if self._shrink:
            slots = largest_fitting(self._shape, self._specs, tightest.usd)
            if slots:
                shrunk = RunShape(
                    self._shape.task, slots, self._shape.writers, self._shape.refine_rounds, self._shape.max_tokens
                )
                self.slots, self.bound_usd = slots, upper_bound_usd(shrunk, self._specs)
                return self.bound_usd
        fewer = "even with 1 instance; " if self._shrink else ""
        raise BudgetExceededError(
            f"budget: this run may cost up to ${bound:.6f} ({self._shape.slots} answer slot(s), docs/budgets.md) and "
            f"only ${max(tightest.usd, 0.0):.6f} is left {fewer}- {tightest.why}. Nothing was called or stored: "
            "ask for fewer instances (swarm_size), set allow_shrink to run with fewer, lower SWARM_MAX_TOKENS, or wait "
            "for the budget to reset"
        )


def budget_uses(ledger: Ledger, caller: str, tenant: str, budgets: Budgets) -> list[pb.BudgetUse]:
    """A caller's spend against every budget that concerns it (``swarm budget``)."""
    uses = []
    for scope, name, limits, day, month in (
        ("caller", caller, budgets.for_caller(caller), ledger.caller_day, ledger.caller_month),
        ("tenant", tenant, budgets.for_tenant(tenant), ledger.tenant_day, ledger.tenant_month),
    ):
        for period, spend in (("day", day), ("month", month)):
            uses.append(
                pb.BudgetUse(
                    scope=scope,
                    name=name,
                    period=period,
                    limit_usd=limits.of(period),
                    spent_usd=spend.spent_usd,
                    reserved_usd=spend.reserved_usd,
                )
            )
    return uses


def remaining_ratio(uses: Sequence[pb.BudgetUse]) -> dict[str, float]:
    """Per scope and period ("caller_day", "tenant_month", ...): the smallest share of a budget
    left (1 full, 0 exhausted) among ``uses``; scopes without a limit are left out. The metrics
    helper exports it as ``swarm_budget_remaining_ratio{scope}`` (bounded labels: four scopes)."""
    ratios: dict[str, float] = {}
    for use in uses:
        if use.limit_usd <= 0:
            continue
        key = f"{use.scope}_{use.period}"
        left = max(0.0, min(1.0, (use.limit_usd - use.spent_usd - use.reserved_usd) / use.limit_usd))
        ratios[key] = min(ratios.get(key, 1.0), left)
    return ratios


async def remaining_ratios(ledgers: BudgetStore, budgets: Budgets) -> dict[str, float]:
    """``remaining_ratio`` over every caller that spent this month or has a budget of its own
    (the gauge the metrics helper exports; one read per caller, so scrape it, do not poll it)."""
    callers = dict(await ledgers.callers())
    for caller in budgets.callers:
        callers.setdefault(caller, caller.split("/", 1)[0])
    uses: list[pb.BudgetUse] = []
    for caller, tenant in sorted(callers.items()):
        uses += budget_uses(await ledgers.ledger(caller, tenant), caller, tenant, budgets)
    return remaining_ratio(uses)
