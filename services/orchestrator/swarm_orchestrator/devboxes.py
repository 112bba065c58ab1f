"""Devbox-hosted instances in the orchestrator: pool entries whose address follows their devbox.

``devbox-1`` … ``devbox-N`` are ordinary pool entries, so runs, fallbacks, ``ListInstances`` and
the refiner use them like any ``SWARM_INSTANCES`` entry. Two things differ, and this module adds
them without touching the fan-out or the pipeline:

* their spec changes when a devbox is provisioned, retired or replaced (``DevboxInstancePool``
  is the manager's listener and swaps the spec in place), and their health comes from the
  manager, which runs on the pool's periodic check instead of a ``/v1/models`` probe of a
  placeholder address;
* a call to one waits for its devbox (the chat client's ``resolve`` hook, ``devbox_endpoints``): in
  ``per-run`` mode, or after an idle shutdown, the first call provisions it, and every call keeps
  it from being shut down idle.

This module imports the Runloop SDK, so the server imports it only when devboxes are configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import httpx

from swarmlib import ChatClient, Endpoint, InstanceSpec, ResolveEndpoint, RetryPolicy

from .config import OrchestratorConfig
from .devbox_manager import DevboxInstances
from .devbox_scaler import ScalePolicy
from .devbox_scaling import DevboxScaler, MayGrow, always_grow
from .pool import InstanceHealth, InstancePool
from .run_queue import RunQueue


class DevboxInstancePool(InstancePool):
    """The instance pool with devbox entries; it is the ``DevboxListener`` of ``devboxes``."""

    def __init__(
        self, specs: tuple[InstanceSpec, ...], secrets: dict[str, str], unhealthy_after: int, devboxes: DevboxInstances
    ) -> None:
        super().__init__(specs + devboxes.specs(), secrets, unhealthy_after)
        self._devboxes = devboxes
        devboxes.listen(self)
        for name in devboxes.names:  # slots the scaler may grow into later
            if devboxes.slot(name).parked:
                self.park(name)

    # -- DevboxListener --------------------------------------------------------------------

    def ready(self, spec: InstanceSpec) -> None:
        self._install(spec)
        self.succeeded(spec.name)

    def unavailable(self, spec: InstanceSpec, reason: str) -> None:
        state = self._install(spec)
        state.healthy = False
        state.last_error = reason

    def on_demand(self, spec: InstanceSpec) -> None:
        self._install(spec)
        self.succeeded(spec.name)

    def probe_failed(self, name: str, reason: str) -> None:
        self.failed(name, reason)

    def _install(self, spec: InstanceSpec) -> InstanceHealth:
        state = self._health[spec.name]
        state.spec = spec
        return state

    # -- health ----------------------------------------------------------------------------

    async def check(self, http: httpx.AsyncClient) -> None:
        """Probe the static instances as the base pool does; the manager checks (and retires) devboxes."""
        static = [name for name in self.names if not self._devboxes.owns(name)]
        await asyncio.gather(self._devboxes.maintain(), *(self.probe(http, name) for name in static))


def devbox_endpoints(devboxes: DevboxInstances) -> ResolveEndpoint:
    """The chat client's ``resolve`` hook: a devbox instance is called at its devbox's current address.

    Waiting for provisioning does not count against the call's ``timeout`` (the client enters the
    hook first); other instances are called as they are.
    """

    @contextlib.asynccontextmanager
    async def resolve(endpoint: Endpoint) -> AsyncIterator[Endpoint]:
        if not devboxes.owns(endpoint.name):
            yield endpoint
            return
        async with devboxes.using(endpoint.name) as spec:
            yield dataclasses.replace(endpoint, base_url=spec.base_url)

    return resolve


@dataclasses.dataclass
class Devboxes:
    """What the server wires: the pool and client to use instead of the plain ones, the manager,
    and the scaler once ``scale_on`` gave it the queue (only when SWARM_DEVBOX_MAX > SWARM_DEVBOX_MIN).

    ``may_grow`` is the budget's hook, asked before each growth; set it before ``scale_on``.
    """

    instances: DevboxInstances
    pool: DevboxInstancePool
    client: ChatClient
    policy: ScalePolicy = dataclasses.field(default_factory=ScalePolicy)
    may_grow: MayGrow = always_grow
    scaler: DevboxScaler | None = None

    def scale_on(self, queue: RunQueue) -> None:
        if self.policy.enabled:
            self.scaler = DevboxScaler(self.policy, self.instances, self.pool, queue, may_grow=self.may_grow)

    def start(self) -> None:
        self.instances.start()
        if self.scaler is not None:
            self.scaler.start()

    async def aclose(self) -> None:
        if self.scaler is not None:
            await self.scaler.aclose()
        await self.instances.aclose()


def open_devboxes(config: OrchestratorConfig, http: httpx.AsyncClient, retry: RetryPolicy) -> Devboxes:
    """The devbox manager, the pool holding static and devbox instances, and the client that calls them."""
    instances = DevboxInstances(config.devboxes, http, failures_to_replace=config.unhealthy_after)
    pool = DevboxInstancePool(config.instances, dict(config.secrets), config.unhealthy_after, instances)
    client = ChatClient(http, retry, resolve=devbox_endpoints(instances))
    return Devboxes(instances, pool, client, config.devboxes.scaling)
