"""Refiner configuration, read once from the environment at start-up."""

from __future__ import annotations

import types
from collections.abc import Mapping
from dataclasses import dataclass, field

from swarm.v1 import common_pb2
from swarmlib import ConfigError, env_float, env_int, env_str


@dataclass(frozen=True)
class RefinerConfig:
    """Everything the refiner needs; nothing deeper reads ``os.environ``.

    The environment itself is kept (read-only, out of ``repr``) because requests only name the
    variable that holds an instance's API key: secrets never travel over gRPC.
    """

    address: str = "127.0.0.1:50054"
    llm_timeout: float = 60.0
    default_max_tokens: int = 768
    llm_attempts: int = 3
    grace: float = 5.0
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RefinerConfig:
        return cls(
            address=env_str(env, "SWARM_REFINER_ADDR", "127.0.0.1:50054"),
            llm_timeout=env_float(env, "SWARM_REFINER_LLM_TIMEOUT_S", 60.0, minimum=0.1),
            default_max_tokens=env_int(env, "SWARM_REFINER_MAX_TOKENS", 768, minimum=1),
            llm_attempts=env_int(env, "SWARM_REFINER_LLM_ATTEMPTS", 3, minimum=1),
            grace=env_float(env, "SWARM_REFINER_GRACE_S", 5.0, minimum=0.0),
            env=types.MappingProxyType(dict(env)),
        )

    def api_key(self, instance: common_pb2.InstanceRef) -> str:
        """The bearer token for ``instance``; a named but unset variable fails the call early."""
        if not instance.api_key_env:
            return ""
        value = self.env.get(instance.api_key_env, "")
        if not value:
            raise ConfigError(
                f"instance {instance.name or instance.model!r}: environment variable {instance.api_key_env} "
                "is not set in the refiner's environment"
            )
        return value
