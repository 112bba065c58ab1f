"""Instance health: who is healthy, who serves which slot, who takes over when one fails."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

import httpx

from swarmlib import Endpoint, InstanceSpec, LLMError, list_models

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

    An instance is marked unhealthy after ``unhealthy_after`` consecutive failures; the periodic
    health check (``/v1/models``) or any later success brings it back.
    """

    def __init__(self, specs: tuple[InstanceSpec, ...], secrets: dict[str, str], unhealthy_after: int) -> None:
        self._health = {spec.name: InstanceHealth(spec) for spec in specs}
        self._secrets = secrets
        self._unhealthy_after = unhealthy_after
        self._checker: asyncio.Task[None] | None = None

    @property
    def names(self) -> list[str]:
        return list(self._health)

    def states(self) -> list[InstanceHealth]:
        return list(self._health.values())

    def spec(self, name: str) -> InstanceSpec:
        return self._health[name].spec

    def endpoint(self, name: str) -> Endpoint:
        spec = self._health[name].spec
        return Endpoint(name=spec.name, base_url=spec.base_url, model=spec.model, api_key=spec.api_key(self._secrets))

    def is_healthy(self, name: str) -> bool:
        return self._health[name].healthy

    def assign(self, size: int, allowed: list[str]) -> list[str]:
        """Instance for each slot: healthy ones first, round-robin; unhealthy ones only if none is healthy."""
        healthy = [n for n in allowed if self._health[n].healthy]
        order = healthy or allowed
        return [order[i % len(order)] for i in range(size)]

    def fallback_for(self, failed: str, allowed: list[str]) -> str | None:
        """Another healthy instance for a retry, the least busy first; None when there is none."""
        others = [n for n in allowed if n != failed and self._health[n].healthy]
        if not others:
            return None
        return min(others, key=lambda n: (self._health[n].in_flight, self._health[n].consecutive_failures))

    def started(self, name: str) -> None:
        self._health[name].in_flight += 1

    def succeeded(self, name: str) -> None:
        state = self._health[name]
        state.in_flight = max(0, state.in_flight - 1)
        state.consecutive_failures = 0
        state.healthy = True
        state.last_error = ""

    def failed(self, name: str, reason: str) -> None:
        state = self._health[name]
        state.in_flight = max(0, state.in_flight - 1)
        state.consecutive_failures += 1
        state.last_error = reason
        if state.consecutive_failures >= self._unhealthy_after and state.healthy:
            state.healthy = False
            log.warning("instance %s marked unhealthy after %d failures: %s", name, state.consecutive_failures, reason)

    async def check(self, http: httpx.AsyncClient) -> None:
        """Probe every instance's ``/v1/models`` once; unhealthy ones that answer come back."""

        async def probe(name: str) -> None:
            state = self._health[name]
            try:
                await list_models(http, self.endpoint(name))
            except LLMError as exc:
                state.last_error = str(exc)
                if not state.healthy:
                    return
                state.consecutive_failures = max(state.consecutive_failures, self._unhealthy_after)
                state.healthy = False
                return
            if not state.healthy:
                log.info("instance %s healthy again", name)
            state.healthy = True
            state.consecutive_failures = 0

        await asyncio.gather(*(probe(name) for name in self._health))

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
