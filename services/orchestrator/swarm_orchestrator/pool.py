"""Instance health: who is healthy, who serves which slot, who takes over when one fails."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from swarm.v1 import common_pb2
from swarmlib import ConfigError, Endpoint, InstanceSpec, LLMError, list_models

log = logging.getLogger(__name__)


@dataclass
class InstanceHealth:
    """Mutable health of one instance; only the pool changes it."""

    spec: InstanceSpec
    consecutive_failures: int = 0
    healthy: bool = True
    last_error: str = ""
    in_flight: int = 0


class InstancePool:
    """Assigns slots round-robin over healthy instances and tracks failures.

    An instance is marked unhealthy after ``unhealthy_after`` consecutive failures (answers and
    ``/v1/models`` probes alike) and then gets no slots while any healthy instance remains; the
    periodic probe brings it back as soon as it answers again.
    """

    def __init__(self, specs: tuple[InstanceSpec, ...], secrets: dict[str, str], unhealthy_after: int) -> None:
        self._health = {spec.name: InstanceHealth(spec) for spec in specs}
        self._secrets = secrets
        self._unhealthy_after = unhealthy_after
        self._checker: asyncio.Task[None] | None = None
        self._cursor = 0
        self._parked: set[str] = set()  # out of service (the devbox scaler): no new slots, no retries

    @property
    def names(self) -> list[str]:
        return list(self._health)

    @property
    def serving(self) -> list[str]:
        """The instances that may get new work: every one but those parked."""
        return [name for name in self._health if name not in self._parked]

    def park(self, name: str) -> None:
        """Give ``name`` no new slot, test or retry (runs already on it go on); ``unpark`` undoes it."""
        self._parked.add(name)

    def unpark(self, name: str) -> None:
        self._parked.discard(name)

    def states(self) -> list[InstanceHealth]:
        return list(self._health.values())

    def spec(self, name: str) -> InstanceSpec:
        return self._health[name].spec

    def endpoint(self, name: str) -> Endpoint:
        spec = self._health[name].spec
        return Endpoint(name=spec.name, base_url=spec.base_url, model=spec.model, api_key=spec.api_key(self._secrets))

    def is_healthy(self, name: str) -> bool:
        """Healthy and in service (a parked instance is offered no refinement either)."""
        return self._health[name].healthy and name not in self._parked

    def assign(self, size: int, allowed: list[str]) -> list[str]:
        """Instance for each slot: healthy ones only (all of them if none is), round-robin.

        The starting point rotates from run to run so that small swarms spread over every instance.
        """
        chosen = self.propose(size, allowed)
        self.advance(size)
        return chosen

    def propose(self, size: int, allowed: Sequence[str], offset: int = 0) -> list[str]:
        """What ``assign`` would answer after ``offset`` more slots were assigned, changing nothing."""
        allowed = [n for n in allowed if n not in self._parked] or list(allowed)
        healthy = [n for n in allowed if self._health[n].healthy]
        order = healthy or list(allowed)
        start = (self._cursor + offset) % len(order)
        return [order[(start + i) % len(order)] for i in range(size)]

    def advance(self, size: int) -> None:
        """Move the round-robin on as ``assign`` of ``size`` slots would (the run queue assigns)."""
        self._cursor += size

    def writers_for(self, allowed: Sequence[str], writers: int) -> list[str]:
        """The instances that write a run's tests: the first ``writers`` healthy ones it may use."""
        return [n for n in allowed if self._health[n].healthy and n not in self._parked][:writers]

    def fallback_for(self, failed: str, allowed: list[str]) -> str | None:
        """Another instance for a retry: a healthy one, the least busy first; when every other is
        marked unhealthy, the one with the fewest failures in a row (a mark is a guess from recent
        failures, while giving up costs the slot for sure); None when there is no other. A parked
        (draining) devbox is never one."""
        others = [n for n in allowed if n != failed and n not in self._parked]
        if not others:
            return None
        healthy = [n for n in others if self._health[n].healthy]
        return min(healthy or others, key=lambda n: (self._health[n].consecutive_failures, self._health[n].in_flight))

    def started(self, name: str) -> None:
        self._health[name].in_flight += 1

    def succeeded(self, name: str) -> None:
        state = self._health[name]
        state.consecutive_failures = 0
        state.healthy = True
        state.last_error = ""

    def finished(self, name: str) -> None:
        """The attempt is over, whatever its outcome (pairs with ``started``)."""
        state = self._health[name]
        state.in_flight = max(0, state.in_flight - 1)

    def failed(self, name: str, reason: str) -> None:
        state = self._health[name]
        state.consecutive_failures += 1
        state.last_error = reason
        if state.consecutive_failures >= self._unhealthy_after and state.healthy:
            state.healthy = False
            log.warning("instance %s marked unhealthy after %d failures: %s", name, state.consecutive_failures, reason)

    async def check(self, http: httpx.AsyncClient) -> None:
        """Probe every instance's ``/v1/models`` once; unhealthy ones that answer come back."""
        await asyncio.gather(*(self.probe(http, name) for name in self._health))

    async def probe(self, http: httpx.AsyncClient, name: str) -> None:
        """One ``/v1/models`` health check of ``name``, counted like an answer."""
        try:
            await list_models(http, self.endpoint(name))
        except (LLMError, ConfigError) as exc:
            self.failed(name, f"health check: {exc}")
            return
        if not self._health[name].healthy:
            log.info("instance %s healthy again", name)
        self.succeeded(name)

    def instance_ref(self, name: str) -> common_pb2.InstanceRef:
        """The instance as the contracts describe it (no secret: only the key's variable name)."""
        spec = self._health[name].spec
        return common_pb2.InstanceRef(
            name=spec.name,
            base_url=spec.base_url,
            model=spec.model,
            api_key_env=spec.api_key_env,
            temperature=spec.temperature,
            seed=spec.seed,
            price_input_per_mtok=spec.price_input_per_mtok,
            price_output_per_mtok=spec.price_output_per_mtok,
        )

    def start_checks(self, http: httpx.AsyncClient, interval: float) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(interval)
                try:
                    await self.check(http)
                except Exception:
                    log.exception("health check round failed")

        self._checker = asyncio.create_task(loop(), name="instance-health")

    async def stop_checks(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checker
