"""Settings of LLM instances served from Runloop devboxes, kept apart so config does not import the SDK.

The orchestrator reads these at start-up whether or not devboxes are used, so a typo in a
``SWARM_DEVBOX_*`` variable fails the start with a message naming it instead of surfacing at the
first run. The Runloop API key (``RUNLOOP_API_KEY``, the SDK's own variable) is excluded from
``repr`` so it never reaches a log line or a span attribute.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass, field

from swarmlib import ConfigError, InstanceSpec, env_float, env_int, env_str, load_instances, require

from .devbox_scaler import ScalePolicy

MODES = ("warm", "per-run")
NAME_PREFIX = "devbox-"
MAX_DEVBOX_INSTANCES = 16
# How the SDK's ``get_tunnel_url`` forms a tunnel address; ``domain`` is the API host without ``api.``.
DEFAULT_TUNNEL_URL = "https://{port}-{tunnel_key}.tunnel.{domain}"
_PLACEHOLDERS = frozenset({"port", "tunnel_key", "domain"})


@dataclass(frozen=True)
class DevboxInstancesConfig:
    """How many devbox-hosted instances to run, from which blueprint, and when to shut them down.

    ``mode`` is ``warm`` (provision at start-up) or ``per-run`` (provision when a run first needs
    the instance); in both, a devbox idle for ``idle_shutdown_s`` is shut down and provisioned
    again at its next use.
    """

    count: int = 0
    blueprint: str = ""
    model: str = "qwen2.5-coder-0.5b-instruct"
    port: int = 8080
    mode: str = "warm"
    idle_shutdown_s: float = 1800.0
    # Booting the devbox, then loading the model until GET /v1/models answers through the tunnel.
    boot_timeout_s: float = 600.0
    ready_timeout_s: float = 600.0
    probe_interval_s: float = 2.0
    temperature: float = 0.7
    tunnel_url: str = DEFAULT_TUNNEL_URL
    api_key: str = field(default="", repr=False)
    base_url: str = ""
    max_retries: int = 3
    # The pool's size limits (``minimum == maximum == 0``, the default here: ``count``, fixed).
    scaling: ScalePolicy = field(default_factory=ScalePolicy)

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (
                0 <= self.count <= MAX_DEVBOX_INSTANCES,
                f"SWARM_DEVBOX_INSTANCES={self.count} must be between 0 and {MAX_DEVBOX_INSTANCES}",
            ),
            (self.mode in MODES, f"SWARM_DEVBOX_MODE={self.mode!r} must be one of {', '.join(MODES)}"),
            (1 <= self.port <= 65535, f"SWARM_DEVBOX_PORT={self.port} must be a TCP port (1-65535)"),
            (self.idle_shutdown_s > 0, f"SWARM_DEVBOX_IDLE_SHUTDOWN_S={self.idle_shutdown_s} must be > 0"),
            (self.boot_timeout_s > 0, f"SWARM_DEVBOX_BOOT_TIMEOUT_S={self.boot_timeout_s} must be > 0"),
            (self.ready_timeout_s > 0, f"SWARM_DEVBOX_READY_TIMEOUT_S={self.ready_timeout_s} must be > 0"),
            (self.probe_interval_s > 0, f"SWARM_DEVBOX_PROBE_INTERVAL_S={self.probe_interval_s} must be > 0"),
            (0.0 <= self.temperature <= 2.0, f"SWARM_DEVBOX_TEMPERATURE={self.temperature} must be in [0, 2]"),
            (self.max_retries >= 0, f"SWARM_RUNLOOP_MAX_RETRIES={self.max_retries} must be >= 0"),
            (bool(self.model), "SWARM_DEVBOX_MODEL must not be empty"),
        ]
        if self.count:
            checks += [
                (
                    bool(self.api_key),
                    "SWARM_DEVBOX_INSTANCES is set but RUNLOOP_API_KEY is not: set the Runloop API key",
                ),
                (
                    bool(self.blueprint),
                    "SWARM_DEVBOX_INSTANCES is set but SWARM_DEVBOX_BLUEPRINT is not: name the blueprint "
                    "(bpt_… id or name) whose devboxes start the OpenAI-compatible server",
                ),
            ]
        if self.scaling.maximum:
            low, high = self.scaling.minimum, self.scaling.maximum
            checks += [
                (self.count > 0, "SWARM_DEVBOX_MIN/SWARM_DEVBOX_MAX need SWARM_DEVBOX_INSTANCES (the starting size)"),
                (
                    1 <= low <= self.count <= high <= MAX_DEVBOX_INSTANCES,
                    f"SWARM_DEVBOX_MIN={low}, SWARM_DEVBOX_INSTANCES={self.count}, SWARM_DEVBOX_MAX={high}: need "
                    f"1 <= MIN <= INSTANCES <= MAX <= {MAX_DEVBOX_INSTANCES}",
                ),
            ]
        require(checks)
        _check_tunnel_url(self.tunnel_url)

    @property
    def keep_warm(self) -> bool:
        return self.mode == "warm"

    @property
    def names(self) -> list[str]:
        """The instance names, ``devbox-1`` … ``devbox-MAX``, stable across devbox replacements.

        The first ``count`` serve from the start; the scaler grows into the others and parks them again.
        """
        return [f"{NAME_PREFIX}{i}" for i in range(1, max(self.count, self.scaling.maximum) + 1)]

    def placeholder(self, name: str) -> InstanceSpec:
        """The spec of a slot without a devbox: a host that cannot resolve, so nothing reaches a stale tunnel."""
        return InstanceSpec(
            name=name,
            base_url=f"http://{name}.devbox-not-running.invalid/v1",
            model=self.model,
            temperature=self.temperature,
        )

    def tunnel_base_url(self, tunnel_key: str, api_host: str) -> str:
        """The OpenAI base URL through a tunnel, formed as the SDK's ``get_tunnel_url`` forms the host."""
        domain = api_host[4:] if api_host.startswith("api.") else api_host
        return self.tunnel_url.format(port=self.port, tunnel_key=tunnel_key, domain=domain).rstrip("/") + "/v1"

    def static_instances(self, env: Mapping[str, str]) -> tuple[InstanceSpec, ...]:
        """``SWARM_INSTANCES`` (or its file), optional when devboxes serve; none may take a devbox name."""
        configured = env.get("SWARM_INSTANCES", "").strip() or env.get("SWARM_INSTANCES_FILE", "").strip()
        instances = load_instances(env) if configured or not self.count else ()
        taken = sorted({spec.name for spec in instances} & set(self.names))
        if taken:
            raise ConfigError(
                f"SWARM_INSTANCES: instance name(s) {taken} are taken by SWARM_DEVBOX_INSTANCES={self.count}; "
                "rename them"
            )
        return instances

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DevboxInstancesConfig:
        """Read ``SWARM_DEVBOX_*`` (the scaling limits too), ``RUNLOOP_API_KEY``, ``RUNLOOP_BASE_URL``
        and ``SWARM_RUNLOOP_MAX_RETRIES``."""
        return cls(
            count=env_int(env, "SWARM_DEVBOX_INSTANCES", cls.count),
            blueprint=env_str(env, "SWARM_DEVBOX_BLUEPRINT", cls.blueprint),
            model=env_str(env, "SWARM_DEVBOX_MODEL", cls.model),
            port=env_int(env, "SWARM_DEVBOX_PORT", cls.port),
            mode=env_str(env, "SWARM_DEVBOX_MODE", cls.mode).lower(),
            idle_shutdown_s=env_float(env, "SWARM_DEVBOX_IDLE_SHUTDOWN_S", cls.idle_shutdown_s),
            boot_timeout_s=env_float(env, "SWARM_DEVBOX_BOOT_TIMEOUT_S", cls.boot_timeout_s),
            ready_timeout_s=env_float(env, "SWARM_DEVBOX_READY_TIMEOUT_S", cls.ready_timeout_s),
            probe_interval_s=env_float(env, "SWARM_DEVBOX_PROBE_INTERVAL_S", cls.probe_interval_s),
            temperature=env_float(env, "SWARM_DEVBOX_TEMPERATURE", cls.temperature),
            tunnel_url=env_str(env, "SWARM_DEVBOX_TUNNEL_URL", cls.tunnel_url),
            api_key=env.get("RUNLOOP_API_KEY", "").strip(),
            base_url=env_str(env, "RUNLOOP_BASE_URL", cls.base_url),
            max_retries=env_int(env, "SWARM_RUNLOOP_MAX_RETRIES", cls.max_retries),
            scaling=ScalePolicy.from_env(env, env_int(env, "SWARM_DEVBOX_INSTANCES", cls.count)),
        )


def _check_tunnel_url(template: str) -> None:
    """The template must name the tunnel key and use no placeholder we cannot fill."""
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ConfigError(f"SWARM_DEVBOX_TUNNEL_URL={template!r} is not a valid template: {exc}") from None
    unknown = sorted(fields - _PLACEHOLDERS)
    if unknown:
        raise ConfigError(
            f"SWARM_DEVBOX_TUNNEL_URL={template!r}: unknown placeholder(s) {unknown}; use {sorted(_PLACEHOLDERS)}"
        )
    if "tunnel_key" not in fields:
        raise ConfigError(f"SWARM_DEVBOX_TUNNEL_URL={template!r} must contain {{tunnel_key}}")
    if not template.startswith(("http://", "https://")):
        raise ConfigError(f"SWARM_DEVBOX_TUNNEL_URL={template!r} must start with http:// or https://")
