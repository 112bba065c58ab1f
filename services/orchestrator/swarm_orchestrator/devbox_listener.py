"""What the devbox manager tells the orchestrator's instance pool, kept apart so the pool's side
of the contract can be read (and faked in tests) without the manager and its SDK."""

from __future__ import annotations

from typing import Protocol

from swarmlib import InstanceSpec


class DevboxListener(Protocol):
    """Told when a devbox instance's spec or availability changes (the orchestrator's pool)."""

    def ready(self, spec: InstanceSpec) -> None:
        """``spec`` (a live tunnel URL) answers: give it work."""

    def unavailable(self, spec: InstanceSpec, reason: str) -> None:
        """Its devbox is booting or gone: prefer other instances for now."""

    def on_demand(self, spec: InstanceSpec) -> None:
        """No devbox now, but one is provisioned when a call needs it: the instance may get work."""

    def probe_failed(self, name: str, reason: str) -> None:
        """A health check of a running devbox failed (counted like a failed answer)."""


class NoListener:
    """Hears nothing: the manager's listener until the pool listens."""

    def ready(self, spec: InstanceSpec) -> None:
        pass

    def unavailable(self, spec: InstanceSpec, reason: str) -> None:
        pass

    def on_demand(self, spec: InstanceSpec) -> None:
        pass

    def probe_failed(self, name: str, reason: str) -> None:
        pass
