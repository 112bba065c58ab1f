"""Refiner configuration, read once from the environment at start-up."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field

from swarm.v1 import common_pb2
from swarmlib import (
    ConfigError,
    InstanceSpec,
    MetricsConfig,
    PermissionDeniedError,
    Transport,
    env_float,
    env_int,
    env_str,
    load_instances,
)

from .prompt import TEMPLATE_VERSION, TEMPLATE_VERSIONS


@dataclass(frozen=True)
class RefinerConfig:
    """Everything the refiner needs; nothing deeper reads ``os.environ``.

    The environment itself is kept (read-only, out of ``repr``) because requests only name the
    variable that holds an instance's API key: secrets never travel over gRPC. Which instances may
    receive a key is the refiner's own decision: ``instances`` (from ``SWARM_INSTANCES`` or
    ``SWARM_INSTANCES_FILE``, like the orchestrator's), never the caller's.
    """

    address: str = "127.0.0.1:50054"
    llm_timeout: float = 60.0
    default_max_tokens: int = 768
    llm_attempts: int = 3
    grace: float = 5.0
    # Prompt template (templates/<version>.txt); an older version stays selectable to compare or roll back.
    template: str = TEMPLATE_VERSION
    instances: Mapping[str, InstanceSpec] = field(default_factory=dict)
    transport: Transport = field(default_factory=Transport)
    # Where /metrics is served (SWARM_METRICS_ADDR; docs/metrics.md).
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RefinerConfig:
        configured = env.get("SWARM_INSTANCES", "").strip() or env.get("SWARM_INSTANCES_FILE", "").strip()
        instances = load_instances(env) if configured else ()
        template = env_str(env, "SWARM_REFINER_TEMPLATE", TEMPLATE_VERSION)
        if template not in TEMPLATE_VERSIONS:
            shipped = ", ".join(TEMPLATE_VERSIONS)
            raise ConfigError(f"SWARM_REFINER_TEMPLATE={template!r} is not a shipped template; use one of {shipped}")
        address = env_str(env, "SWARM_REFINER_ADDR", "127.0.0.1:50054")
        return cls(
            address=address,
            llm_timeout=env_float(env, "SWARM_REFINER_LLM_TIMEOUT_S", 60.0, minimum=0.1),
            default_max_tokens=env_int(env, "SWARM_REFINER_MAX_TOKENS", 768, minimum=1),
            llm_attempts=env_int(env, "SWARM_REFINER_LLM_ATTEMPTS", 3, minimum=1),
            grace=env_float(env, "SWARM_REFINER_GRACE_S", 5.0, minimum=0.0),
            template=template,
            instances=types.MappingProxyType({spec.name: spec for spec in instances}),
            transport=Transport.from_env(env, "SWARM_REFINER_ADDR", address),
            metrics=MetricsConfig.from_env(env, "refiner"),
            env=types.MappingProxyType(dict(env)),
        )

    def api_key(self, instance: common_pb2.InstanceRef) -> str:
        """The bearer token for ``instance``, sent only to where the refiner's own config says.

        A request naming a key variable must match a configured instance (same name, base_url and
        api_key_env); otherwise a caller could have any secret of this process sent to a URL of
        its choosing. A matching instance whose variable is unset fails the call early.
        """
        if not instance.api_key_env:
            return ""
        spec = self.instances.get(instance.name)
        if spec is None or spec.base_url != instance.base_url or spec.api_key_env != instance.api_key_env:
            raise PermissionDeniedError(
                f"instance {instance.name!r} at {instance.base_url} with api_key_env {instance.api_key_env} "
                "is not an instance configured on the refiner: configure it (same name, base_url and "
                "api_key_env) in the refiner's SWARM_INSTANCES_FILE or SWARM_INSTANCES"
            )
        value = self.env.get(instance.api_key_env, "")
        if not value:
            raise ConfigError(
                f"instance {instance.name or instance.model!r}: environment variable {instance.api_key_env} "
                "is not set in the refiner's environment"
            )
        return value
