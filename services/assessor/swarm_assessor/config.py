"""Assessor settings, read once from the environment at start-up and passed down frozen.

Every limit here bounds what one untrusted program may consume, so bad values stop the service
at start-up instead of silently weakening the sandbox.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from swarmlib import MetricsConfig, SandboxConfig, Transport, env_float, env_int, env_str, require

from .gates import DEFAULT_GATES, GateRule, load_gates

_PREFIX = "SWARM_ASSESSOR_"


def _default_concurrency() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class AssessorConfig:
    """Limits and paths of the assessor; defaults suit a developer laptop."""

    address: str = "127.0.0.1:50053"
    timeout_s: float = 5.0
    max_timeout_s: float = 60.0
    test_timeout_s: float = 2.0
    probe_timeout_s: float = 0.5
    max_generated_tests: int = 128
    mutated_probes: int = 24
    # Inputs without expected outputs when no test gives a probe (typed_inputs); 0 turns them off.
    untested_probes: int = 16
    max_concurrency: int = field(default_factory=_default_concurrency)
    max_candidates: int = 32
    max_queued: int = 64
    queue_timeout_s: float = 30.0
    max_code_bytes: int = 256 * 1024
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    gates: tuple[GateRule, ...] = DEFAULT_GATES
    grace_s: float = 5.0
    transport: Transport = field(default_factory=Transport)
    # Where /metrics is served (SWARM_METRICS_ADDR; docs/metrics.md).
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    telemetry_env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (bool(self.address.strip()), "SWARM_ASSESSOR_ADDR must not be empty"),
            (self.timeout_s > 0, f"SWARM_ASSESSOR_TIMEOUT_S={self.timeout_s} must be > 0"),
            (
                self.max_timeout_s >= self.timeout_s,
                f"SWARM_ASSESSOR_MAX_TIMEOUT_S={self.max_timeout_s} must be >= the default timeout {self.timeout_s}",
            ),
            (self.test_timeout_s > 0, f"SWARM_ASSESSOR_TEST_TIMEOUT_S={self.test_timeout_s} must be > 0"),
            (self.mutated_probes >= 0, f"SWARM_ASSESSOR_MUTATED_PROBES={self.mutated_probes} must be >= 0"),
            (self.untested_probes >= 0, f"SWARM_ASSESSOR_UNTESTED_PROBES={self.untested_probes} must be >= 0"),
            (self.probe_timeout_s > 0, f"SWARM_ASSESSOR_PROBE_TIMEOUT_S={self.probe_timeout_s} must be > 0"),
            (
                self.max_generated_tests >= 0,
                f"SWARM_ASSESSOR_MAX_GENERATED_TESTS={self.max_generated_tests} must be >= 0",
            ),
            (self.max_concurrency >= 1, f"SWARM_ASSESSOR_MAX_CONCURRENCY={self.max_concurrency} must be >= 1"),
            (self.max_candidates >= 1, f"SWARM_ASSESSOR_MAX_CANDIDATES={self.max_candidates} must be >= 1"),
            (
                self.max_concurrency + self.max_queued >= self.max_candidates,
                f"SWARM_ASSESSOR_MAX_CONCURRENCY + SWARM_ASSESSOR_MAX_QUEUED ({self.max_concurrency} + "
                f"{self.max_queued}) must be >= SWARM_ASSESSOR_MAX_CANDIDATES={self.max_candidates}, or a full "
                "request could never be admitted",
            ),
            (self.queue_timeout_s > 0, f"SWARM_ASSESSOR_QUEUE_TIMEOUT_S={self.queue_timeout_s} must be > 0"),
            (self.max_code_bytes >= 1, f"SWARM_ASSESSOR_MAX_CODE_BYTES={self.max_code_bytes} must be >= 1"),
            (self.grace_s >= 0, f"SWARM_ASSESSOR_GRACE_S={self.grace_s} must be >= 0"),
        ]
        require(checks)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AssessorConfig:
        """Build the config from ``env`` (``os.environ`` in production, a dict in tests)."""
        address = env_str(env, f"{_PREFIX}ADDR", cls.address)
        return cls(
            address=address,
            timeout_s=env_float(env, f"{_PREFIX}TIMEOUT_S", cls.timeout_s),
            max_timeout_s=env_float(env, f"{_PREFIX}MAX_TIMEOUT_S", cls.max_timeout_s),
            test_timeout_s=env_float(env, f"{_PREFIX}TEST_TIMEOUT_S", cls.test_timeout_s),
            probe_timeout_s=env_float(env, f"{_PREFIX}PROBE_TIMEOUT_S", cls.probe_timeout_s),
            max_generated_tests=env_int(env, f"{_PREFIX}MAX_GENERATED_TESTS", cls.max_generated_tests),
            mutated_probes=env_int(env, f"{_PREFIX}MUTATED_PROBES", cls.mutated_probes),
            untested_probes=env_int(env, f"{_PREFIX}UNTESTED_PROBES", cls.untested_probes),
            max_concurrency=env_int(env, f"{_PREFIX}MAX_CONCURRENCY", _default_concurrency()),
            max_candidates=env_int(env, f"{_PREFIX}MAX_CANDIDATES", cls.max_candidates),
            max_queued=env_int(env, f"{_PREFIX}MAX_QUEUED", cls.max_queued),
            queue_timeout_s=env_float(env, f"{_PREFIX}QUEUE_TIMEOUT_S", cls.queue_timeout_s),
            max_code_bytes=env_int(env, f"{_PREFIX}MAX_CODE_BYTES", cls.max_code_bytes),
            sandbox=SandboxConfig.from_env(env),
            gates=load_gates(env),
            grace_s=env_float(env, f"{_PREFIX}GRACE_S", cls.grace_s),
            transport=Transport.from_env(env, f"{_PREFIX}ADDR", address),
            metrics=MetricsConfig.from_env(env, "assessor"),
            telemetry_env={k: v for k, v in env.items() if k.startswith("OTEL_")},
        )
