"""The devbox manager: LLM instances served from Runloop devboxes, reached through a tunnel.

A devbox boots in seconds to minutes and its model server then loads its weights, so these
instances have a lifecycle the static ``SWARM_INSTANCES`` do not (the policy is in the README,
"Qwen instances on Runloop devboxes"). Each of ``devbox-1`` … is a slot that holds at most one
devbox at a time: provisioned (create from the blueprint, wait until it runs, open a tunnel, wait
until ``GET /v1/models`` answers through it) at start-up or when a call first needs it, shut down
when idle, replaced when its devbox stops or fails its checks. Until provisioned, its spec points
at a ``.invalid`` host; callers of ``using`` wait for a slot being provisioned instead of failing.
Idle time is read from an injectable clock, so tests move it by hand.

The Runloop rules (idempotency keys, errors that never contain the API key, best-effort shutdown)
are ``swarmlib._runloop``'s; spans carry instance names and devbox ids only. A listener (the
orchestrator's instance pool) is told when a slot's spec or availability changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any

import httpx
from opentelemetry import trace
from runloop_api_client import AsyncRunloop

from swarmlib import (
    BackgroundTasks,
    Endpoint,
    InstanceSpec,
    LLMConnectError,
    LLMError,
    SandboxUnavailableError,
    SwarmError,
    TaskCancelledError,
    list_models,
    wait_shared,
)
from swarmlib._runloop import (
    Clock,
    api_errors,
    blueprint_ref,
    devbox_stopped,
    idempotency_key,
    open_client,
    polling,
    shutdown_devbox,
)

from .devbox_config import DevboxInstancesConfig
from .devbox_listener import DevboxListener, NoListener
from .devbox_ready import PROBE_TIMEOUT_S, until_serving

log = logging.getLogger(__name__)

# Runloop's own idle shutdown comes this long after ours: a backstop, never the first to act.
BACKSTOP_MARGIN_S = 300


class SlotState(enum.Enum):
    DOWN = "down"  # no devbox: provisioned at the next use (or by maintain when wanted)
    STARTING = "starting"  # being created, booted, tunnelled, waited for
    READY = "ready"  # its model server answered through the tunnel


@dataclass(eq=False)
class DevboxSlot:
    """One devbox instance: its name, the devbox serving it now (if any) and its use."""

    name: str
    spec: InstanceSpec
    state: SlotState = SlotState.DOWN
    devbox_id: str | None = None
    in_flight: int = 0
    idle_since: float = 0.0
    failures: int = 0
    # Provision again at the next maintain pass without waiting for a call (warm, or replaced).
    wanted: bool = False
    # Out of the pool (the scaler shrank it, or never grew into it): no devbox, none provisioned.
    parked: bool = False
    last_error: str = ""
    boot: asyncio.Task[InstanceSpec] | None = None


class DevboxInstances:
    """Provisions, health-checks, retires and replaces the devboxes behind ``devbox-1`` … ``devbox-N``.

    ``http`` is the client that reaches the model servers (the orchestrator's); ``clock`` measures
    idle time only, so tests move it by hand; ``client`` replaces the SDK client (tests, benches).
    """

    def __init__(
        self,
        config: DevboxInstancesConfig,
        http: httpx.AsyncClient,
        *,
        listener: DevboxListener | None = None,
        clock: Clock = time.monotonic,
        failures_to_replace: int = 3,
        tracer: trace.Tracer | None = None,
        client: AsyncRunloop | None = None,
    ) -> None:
        if config.count < 1:
            raise ValueError("DevboxInstances needs SWARM_DEVBOX_INSTANCES >= 1")
        self._config = config
        self._http = http
        self._listener: DevboxListener = listener or NoListener()
        self._clock = clock
        self._failures_to_replace = max(1, failures_to_replace)
        self._tracer = tracer or trace.get_tracer(__name__)
        self._client = client or open_client(config.api_key, config.base_url, config.max_retries)
        self._slots = {
            name: DevboxSlot(name, config.placeholder(name), parked=i >= config.count)
            for i, name in enumerate(config.names)
        }
        self._owned: set[str] = set()  # devboxes created and not yet shut down
        self._tasks = BackgroundTasks(log)  # boots are cancelled on close; creates and shutdowns awaited
        self._closed = False

    def __repr__(self) -> str:
        states = {name: slot.state.value for name, slot in self._slots.items()}
        return f"DevboxInstances(blueprint={self._config.blueprint!r}, mode={self._config.mode}, {states})"

    # -- what the orchestrator sees --------------------------------------------------------

    def listen(self, listener: DevboxListener) -> None:
        self._listener = listener

    @property
    def names(self) -> list[str]:
        return list(self._slots)

    def owns(self, name: str) -> bool:
        return name in self._slots

    def specs(self) -> tuple[InstanceSpec, ...]:
        """Each slot's current spec: the tunnel URL when ready, else the placeholder."""
        return tuple(slot.spec for slot in self._slots.values())

    def slot(self, name: str) -> DevboxSlot:
        """The slot behind ``name`` (tests and benches read its state, devbox id and use)."""
        return self._slots[name]

    def start(self) -> None:
        """In ``warm`` mode, start provisioning every slot in the background; ``per-run`` waits for use."""
        if not self._config.keep_warm:
            return
        for slot in self._slots.values():
            if not slot.parked:
                slot.wanted = True
                self._boot(slot)

    def unpark(self, name: str) -> None:
        """The scaler grew the pool into ``name``: provision its devbox now, whatever the mode."""
        slot = self._slots[name]
        slot.parked, slot.wanted = False, True
        if not self._closed:
            self._boot(slot)

    def park(self, name: str) -> None:
        """The scaler shrank the pool (after draining ``name``): shut its devbox down, provision none."""
        slot = self._slots[name]
        slot.parked, slot.wanted = True, False
        if slot.state is SlotState.READY and slot.in_flight == 0:
            self._retire(slot, self._clock() - slot.idle_since)

    @contextlib.asynccontextmanager
    async def using(self, name: str) -> AsyncIterator[InstanceSpec]:
        """The slot's live spec for one call, provisioning it first if needed.

        While the block runs the devbox counts as in use, so the idle policy leaves it alone.
        A slot that cannot be provisioned raises ``LLMConnectError`` (the instance is unreachable).
        """
        slot = self._slots[name]
        slot.in_flight += 1
        try:
            spec = await self._ready(slot)
            yield spec
        finally:
            slot.in_flight -= 1
            slot.idle_since = self._clock()

    async def wait_ready(self) -> None:
        """Wait until no provisioning is in flight (tests, benches); failures are left to ``using``."""
        while boots := [s.boot for s in self._slots.values() if s.boot is not None and not s.boot.done()]:
            await asyncio.gather(*boots, return_exceptions=True)

    async def settle(self) -> None:
        """Wait until no background work (boot, shutdown) is left (tests, benches)."""
        await self._tasks.settle()

    async def _ready(self, slot: DevboxSlot) -> InstanceSpec:
        if self._closed:
            raise LLMConnectError(f"{slot.name}: the devbox instances are shut down")
        if slot.state is SlotState.READY:
            return slot.spec
        try:
            # A caller that gives up must not cancel a boot other callers wait for.
            return await wait_shared(self._boot(slot))
        except SwarmError as exc:
            raise LLMConnectError(f"{slot.name}: no devbox to serve it: {exc}") from exc
        except TaskCancelledError:
            raise LLMConnectError(f"{slot.name}: provisioning was stopped (the orchestrator is closing)") from None

    # -- provisioning ----------------------------------------------------------------------

    def _boot(self, slot: DevboxSlot) -> asyncio.Task[InstanceSpec]:
        """The slot's provisioning in flight, or a new one (never after close: ``_ready`` checks first)."""
        if slot.boot is not None and not slot.boot.done():
            return slot.boot
        slot.state = SlotState.STARTING
        slot.failures = 0
        self._listener.unavailable(slot.spec, "its devbox is starting")
        slot.boot = self._tasks.spawn(self._provision(slot))
        return slot.boot

    async def _provision(self, slot: DevboxSlot) -> InstanceSpec:
        cfg = self._config
        retries = cfg.max_retries
        box_id: str | None = None
        with self._tracer.start_as_current_span("devbox.provision") as span:
            span.set_attribute("swarm.instance", slot.name)
            span.set_attribute("swarm.devbox.port", cfg.port)
            try:
                # The create runs on its own: cancelled here (on close), its devbox is still shut down.
                box_id = await asyncio.shield(self._tasks.spawn(self._create(slot), on_close="await"))
                span.set_attribute("runloop.devbox_id", box_id)
                with api_errors(f"boot devbox {box_id} for {slot.name}", retries):
                    await self._client.devboxes.await_running(box_id, polling_config=polling(cfg.boot_timeout_s))
                with api_errors(f"open a tunnel to devbox {box_id}", retries):
                    tunnel = await self._client.devboxes.enable_tunnel(
                        box_id, auth_mode="open", http_keep_alive=True, idempotency_key=idempotency_key("tunnel")
                    )
                base_url = cfg.tunnel_base_url(tunnel.tunnel_key, self._client.base_url.host)
                spec = InstanceSpec(slot.name, base_url, cfg.model, temperature=cfg.temperature)
                await until_serving(self._client, self._http, cfg, box_id, spec)
            except BaseException as exc:
                if isinstance(exc, Exception):
                    slot.last_error = str(exc)
                    log.warning("devbox instance %s could not be provisioned: %s", slot.name, exc)
                slot.state = SlotState.DOWN
                slot.devbox_id = None
                if box_id is not None:
                    self._shutdown_later(box_id, force=True)
                if not self._closed:
                    self._listener.unavailable(slot.spec, f"its devbox could not be provisioned: {slot.last_error}")
                raise
        slot.spec = spec
        slot.state = SlotState.READY
        slot.idle_since = self._clock()
        slot.last_error = ""
        log.info("devbox instance %s ready on devbox %s (port %d through its tunnel)", slot.name, box_id, cfg.port)
        self._listener.ready(spec)
        return spec

    async def _create(self, slot: DevboxSlot) -> str:
        """The create call alone, remembering the devbox as soon as its id is known."""
        cfg = self._config
        idle = int(cfg.idle_shutdown_s) + BACKSTOP_MARGIN_S
        with api_errors(f"create a devbox for {slot.name}", cfg.max_retries):
            view = await self._client.devboxes.create(
                **blueprint_ref(cfg.blueprint),
                name=f"swarm-{slot.name}",
                metadata={"swarm": "llm-instance", "instance": slot.name},
                launch_parameters={"lifecycle": {"after_idle": {"idle_time_seconds": idle, "on_idle": "shutdown"}}},
                idempotency_key=idempotency_key("create"),
            )
        self._owned.add(view.id)
        slot.devbox_id = view.id
        log.info("devbox %s created for %s (%s)", view.id, slot.name, view.status)
        return view.id

    async def _shutdown(self, box_id: str, *, force: bool) -> None:
        """Best effort: one that cannot be shut down is logged (Runloop's idle policy is the backstop)."""
        self._owned.discard(box_id)
        await shutdown_devbox(self._client, box_id, force=force, retries=self._config.max_retries)

    def _shutdown_later(self, box_id: str, *, force: bool) -> None:
        """Shut ``box_id`` down in the background; closing waits for it rather than cancel it."""
        self._tasks.spawn(self._shutdown(box_id, force=force), on_close="await")

    # -- idle policy and health ------------------------------------------------------------

    async def maintain(self) -> None:
        """One pass: shut down idle devboxes, check the others, provision wanted slots, re-offer the rest."""
        if self._closed:
            return
        now = self._clock()
        checks: list[Coroutine[Any, Any, None]] = []
        for slot in self._slots.values():
            if slot.parked:  # a boot that ended after the park: its devbox goes now
                if slot.state is SlotState.READY and slot.in_flight == 0:
                    self._retire(slot, now - slot.idle_since)
            elif slot.state is SlotState.READY:
                idle_for = now - slot.idle_since
                if slot.in_flight == 0 and idle_for >= self._config.idle_shutdown_s:
                    self._retire(slot, idle_for)
                else:
                    checks.append(self._check(slot))
            elif slot.state is SlotState.DOWN:
                if slot.wanted:
                    self._boot(slot)
                else:
                    self._listener.on_demand(slot.spec)
        await asyncio.gather(*checks)

    def _retire(self, slot: DevboxSlot, idle_for: float) -> None:
        assert slot.devbox_id is not None
        log.info("devbox instance %s: devbox %s shut down after %.0fs idle", slot.name, slot.devbox_id, idle_for)
        self._shutdown_later(slot.devbox_id, force=False)
        self._down(slot)
        slot.wanted = False
        if slot.parked:
            self._listener.unavailable(slot.spec, "not in the pool now: the scaler shrank it")
        else:
            self._listener.on_demand(slot.spec)

    def _down(self, slot: DevboxSlot) -> None:
        slot.state = SlotState.DOWN
        slot.devbox_id = None
        slot.failures = 0
        slot.spec = self._config.placeholder(slot.name)

    async def _check(self, slot: DevboxSlot) -> None:
        """Status first (a dead devbox is replaced at once), then the model server through the tunnel."""
        box_id, spec = slot.devbox_id, slot.spec
        assert box_id is not None
        try:
            stopped = await devbox_stopped(self._client, box_id, self._config.max_retries)
        except SandboxUnavailableError as exc:
            log.warning("%s", exc)  # the API cannot say: the tunnel probe decides
            stopped = None
        if slot.devbox_id != box_id or self._closed:
            return  # retired, replaced or closed meanwhile
        if stopped is not None:
            self._replace(slot, stopped)
            return
        try:
            await list_models(self._http, Endpoint(spec.name, spec.base_url, spec.model), timeout=PROBE_TIMEOUT_S)
        except LLMError as exc:
            if slot.devbox_id != box_id or self._closed:
                return
            slot.failures += 1
            self._listener.probe_failed(slot.name, f"health check: {exc}")
            if slot.failures >= self._failures_to_replace:
                self._replace(slot, f"{slot.failures} failed health checks in a row, the last: {exc}")
            return
        if slot.devbox_id == box_id:
            slot.failures = 0
            self._listener.ready(spec)

    def _replace(self, slot: DevboxSlot, why: str) -> None:
        """Shut the devbox down (forced: it may be mid-snapshot) and provision another for the slot."""
        assert slot.devbox_id is not None
        log.warning("devbox instance %s: devbox %s replaced: %s", slot.name, slot.devbox_id, why)
        self._shutdown_later(slot.devbox_id, force=True)
        self._down(slot)
        slot.wanted = True
        self._boot(slot)

    # -- closing ---------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop provisioning and shut down every devbox created here (forced), then close the SDK client."""
        if self._closed:
            return
        self._closed = True
        # A create already sent still yields a devbox: closing waits for its id so it is shut down too.
        await self._tasks.aclose()
        for slot in self._slots.values():
            self._down(slot)
        await asyncio.gather(*(self._shutdown(box_id, force=True) for box_id in list(self._owned)))
        await self._client.close()
