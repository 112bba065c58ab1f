"""The heartbeat and the sweep: the runs this orchestrator drives keep their leases, and every
replica ends the runs whose lease ran out, because the orchestrator that drove them is gone.

Both run every third of the lease, so a run whose orchestrator was killed ends FAILED
"interrupted" at most a lease and a third after its last renewal, on whichever replica sweeps
first (docs/reliability.md, "Restart without loss").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection

from swarmlib import StoreUnavailableError

from .store import RunStore

log = logging.getLogger(__name__)

SWEEP_BATCH = 100


class Leases:
    """Renews the leases of ``driving()`` (the runs in flight here) and sweeps expired ones."""

    def __init__(self, store: RunStore, driving: Callable[[], Collection[str]]) -> None:
        self._store = store
        self._driving = driving
        self._task: asyncio.Task[None] | None = None

    @property
    def period_s(self) -> float:
        return self._store.lease.ttl_s / 3

    async def renew(self) -> int:
        return await self._store.renew_leases(sorted(self._driving()))

    async def sweep(self) -> list[str]:
        """End every run whose lease ran out (in batches); returns their ids.

        The runs this process drives are spared even when their lease ran out (a renewal that
        failed, or a stall longer than the lease): this process is alive and will store their
        end, so closing them as interrupted would lose answers for nothing. Another replica,
        which cannot tell a stall from a death, still closes them.
        """
        reclaimed: list[str] = []
        while True:
            batch = await self._store.reclaim_expired(SWEEP_BATCH, spare=self._driving())
            for run_id in batch:
                log.warning("run %s: its orchestrator stopped renewing its lease; stored as interrupted", run_id)
            reclaimed += batch
            if len(batch) < SWEEP_BATCH:
                # Their budget reservations too: settled to what they stored (docs/budgets.md).
                await self._store.budget.release_stale()
                return reclaimed

    def start(self) -> None:
        self._task = asyncio.create_task(self._beat(), name="run-leases")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            for step in (self.renew, self.sweep):
                try:
                    await step()
                except StoreUnavailableError as exc:
                    log.warning("run leases: %s failed: %s", step.__name__, exc)
                except Exception:  # a bug here must not stop the heartbeat: runs would be swept
                    log.exception("run leases: %s failed", step.__name__)
