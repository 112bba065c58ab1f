"""Runloop settings, kept apart so ``SandboxConfig`` does not import the Runloop SDK.

The API key is read from ``RUNLOOP_API_KEY`` (the SDK's own variable) and is excluded from
``repr`` so it never reaches a log line or a span attribute.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from ._config import env_float, env_int, env_str, require


@dataclass(frozen=True)
class RunloopConfig:
    """Where the Runloop API is and how the warm pool of devboxes behaves."""

    api_key: str = field(default="", repr=False)
    base_url: str = ""
    blueprint: str = ""
    pool_size: int = 2
    max_devboxes: int = 8
    idle_suspend_s: float = 300.0
    idle_shutdown_s: float = 1800.0
    # Retries the SDK makes on 408/409/429/5xx and connection errors, with the same idempotency key.
    max_retries: int = 3
    # How long a devbox may take to boot or resume before it is given up on.
    boot_timeout_s: float = 600.0
    # Wall clock beyond an execution's own timeout before a silent devbox is treated as hung.
    exec_grace_s: float = 30.0

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.pool_size >= 0, f"SWARM_RUNLOOP_POOL_SIZE={self.pool_size} must be >= 0"),
            (self.max_devboxes >= 1, f"SWARM_RUNLOOP_MAX_DEVBOXES={self.max_devboxes} must be >= 1"),
            (
                self.pool_size <= self.max_devboxes,
                f"SWARM_RUNLOOP_POOL_SIZE={self.pool_size} must be <= SWARM_RUNLOOP_MAX_DEVBOXES={self.max_devboxes}",
            ),
            (self.idle_suspend_s > 0, f"SWARM_RUNLOOP_IDLE_SUSPEND_S={self.idle_suspend_s} must be > 0"),
            (
                self.idle_shutdown_s >= self.idle_suspend_s,
                f"SWARM_RUNLOOP_IDLE_SHUTDOWN_S={self.idle_shutdown_s} must be >= SWARM_RUNLOOP_IDLE_SUSPEND_S",
            ),
            (self.max_retries >= 0, f"SWARM_RUNLOOP_MAX_RETRIES={self.max_retries} must be >= 0"),
            (self.boot_timeout_s > 0, f"SWARM_RUNLOOP_BOOT_TIMEOUT_S={self.boot_timeout_s} must be > 0"),
            (self.exec_grace_s > 0, f"SWARM_RUNLOOP_EXEC_GRACE_S={self.exec_grace_s} must be > 0"),
        ]
        require(checks)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RunloopConfig:
        """Read ``RUNLOOP_API_KEY``, ``RUNLOOP_BASE_URL`` and ``SWARM_RUNLOOP_*`` from ``env``."""
        return cls(
            api_key=env.get("RUNLOOP_API_KEY", "").strip(),
            base_url=env_str(env, "RUNLOOP_BASE_URL", cls.base_url),
            blueprint=env_str(env, "SWARM_RUNLOOP_BLUEPRINT", cls.blueprint),
            pool_size=env_int(env, "SWARM_RUNLOOP_POOL_SIZE", cls.pool_size),
            max_devboxes=env_int(env, "SWARM_RUNLOOP_MAX_DEVBOXES", cls.max_devboxes),
            idle_suspend_s=env_float(env, "SWARM_RUNLOOP_IDLE_SUSPEND_S", cls.idle_suspend_s),
            idle_shutdown_s=env_float(env, "SWARM_RUNLOOP_IDLE_SHUTDOWN_S", cls.idle_shutdown_s),
            max_retries=env_int(env, "SWARM_RUNLOOP_MAX_RETRIES", cls.max_retries),
            boot_timeout_s=env_float(env, "SWARM_RUNLOOP_BOOT_TIMEOUT_S", cls.boot_timeout_s),
            exec_grace_s=env_float(env, "SWARM_RUNLOOP_EXEC_GRACE_S", cls.exec_grace_s),
        )
