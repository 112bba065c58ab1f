"""What the RPCs need of cost and budgets, in one place: reserve a run's upper bound before it is
stored or queued (refusing or shrinking it), settle the reservation when it ends, estimate a
run, and show a caller's spend. docs/budgets.md.
"""

from __future__ import annotations

import logging

import httpx

from swarm.v1 import orchestrator_pb2 as pb
from swarmlib import StoreUnavailableError

from .budget import Reservation, budget_uses, remaining_ratios
from .config import OrchestratorConfig
from .cost import RunShape
from .estimate import Estimator, priced_instances
from .identity import Principal
from .pool import InstancePool
from .store import RunStore

log = logging.getLogger(__name__)


class Spending:
    """Reservations, settlements, estimates and budget views for one orchestrator."""

    def __init__(
        self, config: OrchestratorConfig, pool: InstancePool, store: RunStore, http: httpx.AsyncClient
    ) -> None:
        self._config = config
        self._pool = pool
        self._store = store
        self._estimator = Estimator(config, pool, store, http)

    def shape(self, task: str, size: int, allowed: list[str], refine: bool) -> RunShape:
        writers = min(self._config.test_writers, len(allowed))
        return RunShape(task, size, writers, self._config.refine_rounds if refine else 0, self._config.max_tokens)

    async def reserve(
        self, run_id: str, caller: Principal, request: pb.RunSwarmRequest, allowed: list[str], size: int
    ) -> int:
        """Reserve the run's upper bound (``BudgetExceededError`` when it does not fit and may not
        shrink); returns its answer slots, fewer than ``size`` when it was shrunk."""
        refine = self._config.refine and not request.skip_refine
        reservation = Reservation(
            self.shape(request.task, size, allowed, refine),
            [self._pool.spec(name) for name in priced_instances(allowed, self._config, refine)],
            caller=f"{caller.tenant}/{caller.user}",
            tenant=caller.tenant,
            budgets=self._config.budgets,
            max_cost_usd=request.max_cost_usd,
            allow_shrink=request.allow_shrink,
        )
        await self._store.budget.reserve(run_id, f"{caller.tenant}/{caller.user}", caller.tenant, reservation)
        if reservation.slots < size:
            log.info("run %s: shrunk from %d to %d answer slots to fit its budget", run_id, size, reservation.slots)
        return reservation.slots

    async def settle(self, run_id: str, cost_usd: float) -> None:
        """The run ended (or never started: 0); a failure here is settled by the lease sweep."""
        try:
            await self._store.budget.settle(run_id, cost_usd)
        except StoreUnavailableError as exc:
            log.warning("run %s: its budget reservation is settled later by the sweep: %s", run_id, exc)

    async def estimate(
        self, caller: Principal, request: pb.EstimateRunRequest, allowed: list[str], size: int, first_round: int = 0
    ) -> pb.EstimateRunResponse:
        """The estimate at ``size`` (and of an adaptive run's ``first_round``) with what the caller's
        budgets have left."""
        refine = self._config.refine and not request.skip_refine
        response = await self._estimator.estimate(request.task, size, allowed, refine, first_round)
        uses = await self.uses(caller)
        for period, field in (("day", "remaining_daily_usd"), ("month", "remaining_monthly_usd")):
            left = [u.limit_usd - u.spent_usd - u.reserved_usd for u in uses if u.period == period and u.limit_usd > 0]
            setattr(response, field, max(0.0, min(left)) if left else -1.0)
        return response

    async def uses(self, caller: Principal) -> list[pb.BudgetUse]:
        name = f"{caller.tenant}/{caller.user}"
        ledger = await self._store.budget.ledger(name, caller.tenant)
        return budget_uses(ledger, name, caller.tenant, self._config.budgets)

    async def remaining_ratios(self) -> dict[str, float]:
        """The gauge ``swarm_budget_remaining_ratio{scope}`` (``budget.remaining_ratios``)."""
        return await remaining_ratios(self._store.budget, self._config.budgets)
