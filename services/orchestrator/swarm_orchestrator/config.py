"""Orchestrator configuration, built once from the environment at start-up."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from swarmlib import ConfigError, InstanceSpec, MetricsConfig, Transport, env_bool, env_float, env_int, env_str
from swarmlib.api_keys import IDENTITY, default_keys_file

from .budget_config import Budgets
from .devbox_config import DevboxInstancesConfig

MAX_SWARM_SIZE = 16
# Each refinement round is one LLM call and one assessment; past a few, a small model repeats itself.
MAX_REFINE_ROUNDS = 5
# SWARM_OUTPUT_BATCH_MS bounds: below, a run is again a message per token; above, the text is no
# longer live (docs/live-output.md).
OUTPUT_BATCH_MS = (10, 10_000)
__all__ = ["IDENTITY", "OrchestratorConfig"]


def _refuse_approvers(env: Mapping[str, str]) -> None:
    """``SWARM_APPROVERS`` is gone: approvers are per tenant, as approver API keys."""
    if env.get("SWARM_APPROVERS", "").strip():
        raise ConfigError(
            "SWARM_APPROVERS is no longer read: approvers are per tenant now. Create an approver key for each "
            "(`swarm keys add --tenant T --principal NAME --role approver`) and unset SWARM_APPROVERS "
            "(docs/identity.md)"
        )


def _refine_rounds(env: Mapping[str, str]) -> int:
    """``SWARM_REFINE_ROUNDS``: refinement rounds at most per run, 1..MAX_REFINE_ROUNDS."""
    rounds = env_int(env, "SWARM_REFINE_ROUNDS", 2, minimum=1)
    if rounds > MAX_REFINE_ROUNDS:
        raise ConfigError(
            f"SWARM_REFINE_ROUNDS={rounds} must be at most {MAX_REFINE_ROUNDS}: each round is an LLM call and "
            "an assessment; use SWARM_REFINE=false to skip refinement"
        )
    return rounds


def _output_batch_ms(env: Mapping[str, str]) -> int:
    """``SWARM_OUTPUT_BATCH_MS``: the least time between two instance_output events of an attempt."""
    low, high = OUTPUT_BATCH_MS
    batch_ms = env_int(env, "SWARM_OUTPUT_BATCH_MS", 100, minimum=low)
    if batch_ms > high:
        raise ConfigError(
            f"SWARM_OUTPUT_BATCH_MS={batch_ms} must be at most {high}: streamed text that waits longer is not live"
        )
    return batch_ms


def _refine_instance(env: Mapping[str, str], instances: tuple[InstanceSpec, ...], devboxes: int) -> str:
    """``SWARM_REFINE_INSTANCE``: the configured instance that writes every refinement and answers
    no task (a stronger model beside the swarm); empty, the default, refines on the best answer's
    own instance."""
    name = env_str(env, "SWARM_REFINE_INSTANCE", "").strip()
    if not name:
        return ""
    names = [spec.name for spec in instances]
    if name not in names:
        raise ConfigError(f"SWARM_REFINE_INSTANCE={name!r} names no configured instance; configured: {names}")
    if len(names) == 1 and not devboxes:
        raise ConfigError(
            f"SWARM_REFINE_INSTANCE={name!r} is the only instance, and it answers no task: configure an instance "
            "to answer beside it, or unset SWARM_REFINE_INSTANCE"
        )
    return name


REPUTATION_SCOPES = ("instance", "model")
DEFAULT_SIZINGS = ("adaptive", "complexity")


def _default_sizing(env: Mapping[str, str]) -> str:
    """``SWARM_DEFAULT_SIZING``: how a run that leaves ``swarm_size`` at 0 and does not ask for
    ``adaptive`` is sized: "adaptive" (grow 3, 5, 7 while unsettled; measured best on every recorded
    pool, docs/adaptive.md) or "complexity" (the 3-7 rule of Story 4, ``sizing.auto_swarm_size``)."""
    sizing = env_str(env, "SWARM_DEFAULT_SIZING", "adaptive").strip().lower()
    if sizing not in DEFAULT_SIZINGS:
        raise ConfigError(f"SWARM_DEFAULT_SIZING={sizing!r} must be one of {', '.join(DEFAULT_SIZINGS)}")
    return sizing


def _reputation_scope(env: Mapping[str, str]) -> str:
    """``SWARM_REPUTATION_SCOPE``: "instance" (the default) weighs a vote by its instance's history
    when that history is about the answering model, else by the model's; "model" only ever by the
    model's, for instances that are interchangeable (docs/selection.md, "Reputation")."""
    scope = env_str(env, "SWARM_REPUTATION_SCOPE", "instance").strip().lower()
    if scope not in REPUTATION_SCOPES:
        raise ConfigError(f"SWARM_REPUTATION_SCOPE={scope!r} must be one of {', '.join(REPUTATION_SCOPES)}")
    return scope


@dataclass(frozen=True)
class OrchestratorConfig:
    """Everything the orchestrator needs; passed down, never read from globals."""

    address: str
    collator_target: str
    assessor_target: str
    refiner_target: str
    database_url: str
    instances: tuple[InstanceSpec, ...]
    # Instances served from Runloop devboxes, besides (or instead of) ``instances``.
    devboxes: DevboxInstancesConfig = field(default_factory=DevboxInstancesConfig)
    max_task_chars: int = 20_000
    instance_timeout_s: float = 120.0
    stage_timeout_s: float = 120.0
    quorum_fraction: float = 0.5
    max_tokens: int = 1024
    unhealthy_after: int = 3
    health_interval_s: float = 30.0
    refine: bool = True
    refine_rounds: int = 2
    refine_budget_s: float = 120.0
    # The instance that refines and never answers ("": the best answer's own instance refines).
    refine_instance: str = ""
    llm_retry_attempts: int = 2
    llm_retry_base_delay_s: float = 0.25
    grace_s: float = 10.0
    max_swarm_size: int = MAX_SWARM_SIZE
    test_writers: int = 1
    # An adaptive run's first round and its growth per round (docs/adaptive.md).
    adaptive_start: int = 3
    adaptive_step: int = 2
    # How a request with swarm_size 0 is sized when it does not ask for adaptive itself.
    default_sizing: str = "adaptive"
    # The API keys of the callers (docs/identity.md); re-read when it changes.
    api_keys_file: Path = Path(".swarm/api-keys.json")
    reputation: bool = True
    # Whose history weighs a vote: "instance" (a stable instance's, else its model's) or "model".
    reputation_scope: str = "instance"
    output_batch_ms: int = 100
    # TLS of its own port and, the same identity and CA, of its channels to the stages.
    transport: Transport = field(default_factory=Transport)
    # Where /metrics is served (SWARM_METRICS_ADDR; docs/metrics.md).
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    # A RUNNING run's lease: renewed every third of it; a run whose lease ran out is ended
    # FAILED "interrupted" by any replica's sweep (docs/reliability.md).
    run_lease_s: float = 30.0
    store_busy_timeout_s: float = 5.0
    # Stage calls refused for want of the stage (UNAVAILABLE, RESOURCE_EXHAUSTED) are retried with
    # backoff from this base to this cap, jittered, until the stage timeout.
    stage_retry_base_delay_s: float = 0.25
    stage_retry_max_delay_s: float = 5.0
    # The run queue at the door (docs/queue.md): requests each instance serves at once when its
    # entry sets no ``slots``; runs driven at once (the stages' room); runs that may wait; how
    # long one may wait; how often a replica looks again for room another replica freed.
    instance_slots: int = 4
    max_active_runs: int = 8
    queue_size: int = 256
    queue_timeout_s: float = 600.0
    queue_poll_s: float = 0.5
    # Budgets per caller and tenant, per UTC day and month (docs/budgets.md).
    budgets: Budgets = field(default_factory=Budgets)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    telemetry_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def answering(self, names: Iterable[str]) -> list[str]:
        """``names`` without the refine-only instance: those a run's answers may go to."""
        return [name for name in names if name != self.refine_instance]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OrchestratorConfig:
        _refuse_approvers(env)
        home = Path(env_str(env, "SWARM_HOME", ".swarm"))
        default_db = f"sqlite+aiosqlite:///{home / 'swarm.db'}"
        quorum = env_float(env, "SWARM_QUORUM_FRACTION", 0.5, minimum=0.0)
        if not 0.0 < quorum <= 1.0:
            raise ConfigError(f"SWARM_QUORUM_FRACTION={quorum} must be in (0, 1]")
        database_url = env_str(env, "SWARM_DATABASE_URL", default_db)
        if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
            raise ConfigError(
                f"SWARM_DATABASE_URL={database_url!r}: use sqlite+aiosqlite:///PATH or postgresql+asyncpg://..."
            )
        devboxes = DevboxInstancesConfig.from_env(env)
        instances = devboxes.static_instances(env)
        address = env_str(env, "SWARM_ORCHESTRATOR_ADDR", "127.0.0.1:50051")
        transport = Transport.from_env(env, "SWARM_ORCHESTRATOR_ADDR", address)
        targets = {
            stage: env_str(env, f"SWARM_{stage.upper()}_TARGET", f"127.0.0.1:{port}")
            for stage, port in (("collator", 50052), ("assessor", 50053), ("refiner", 50054))
        }
        for stage, target in targets.items():
            transport.tls.check_client(target, f"SWARM_{stage.upper()}_TARGET")
        retry_base = env_float(env, "SWARM_STAGE_RETRY_BASE_DELAY_S", 0.25, minimum=0.001)
        retry_max = env_float(env, "SWARM_STAGE_RETRY_MAX_DELAY_S", 5.0, minimum=0.001)
        if retry_max < retry_base:
            raise ConfigError(
                f"SWARM_STAGE_RETRY_MAX_DELAY_S={retry_max} must be >= SWARM_STAGE_RETRY_BASE_DELAY_S={retry_base}"
            )
        return cls(
            address=address,
            collator_target=targets["collator"],
            assessor_target=targets["assessor"],
            refiner_target=targets["refiner"],
            database_url=database_url,
            instances=instances,
            devboxes=devboxes,
            max_task_chars=env_int(env, "SWARM_MAX_TASK_CHARS", 20_000, minimum=1),
            instance_timeout_s=env_float(env, "SWARM_INSTANCE_TIMEOUT_S", 120.0, minimum=0.1),
            stage_timeout_s=env_float(env, "SWARM_STAGE_TIMEOUT_S", 120.0, minimum=0.1),
            quorum_fraction=quorum,
            max_tokens=env_int(env, "SWARM_MAX_TOKENS", 1024, minimum=16),
            unhealthy_after=env_int(env, "SWARM_UNHEALTHY_AFTER", 3, minimum=1),
            health_interval_s=env_float(env, "SWARM_HEALTH_INTERVAL_S", 30.0, minimum=0.1),
            refine=env_bool(env, "SWARM_REFINE", True),
            refine_rounds=_refine_rounds(env),
            refine_budget_s=env_float(env, "SWARM_REFINE_BUDGET_S", 120.0, minimum=1.0),
            refine_instance=_refine_instance(env, instances, len(devboxes.names)),
            llm_retry_attempts=env_int(env, "SWARM_LLM_RETRY_ATTEMPTS", 2, minimum=1),
            llm_retry_base_delay_s=env_float(env, "SWARM_LLM_RETRY_BASE_DELAY_S", 0.25, minimum=0.0),
            grace_s=env_float(env, "SWARM_ORCHESTRATOR_GRACE_S", 10.0, minimum=0.0),
            max_swarm_size=env_int(env, "SWARM_MAX_SWARM_SIZE", MAX_SWARM_SIZE, minimum=1),
            test_writers=env_int(env, "SWARM_TEST_WRITERS", 1, minimum=0),
            adaptive_start=env_int(env, "SWARM_ADAPTIVE_START", 3, minimum=1),
            adaptive_step=env_int(env, "SWARM_ADAPTIVE_STEP", 2, minimum=1),
            default_sizing=_default_sizing(env),
            api_keys_file=default_keys_file(env),
            reputation=env_bool(env, "SWARM_REPUTATION", True),
            reputation_scope=_reputation_scope(env),
            output_batch_ms=_output_batch_ms(env),
            transport=transport,
            metrics=MetricsConfig.from_env(env, "orchestrator"),
            run_lease_s=env_float(env, "SWARM_RUN_LEASE_S", 30.0, minimum=0.5),
            store_busy_timeout_s=env_float(env, "SWARM_STORE_BUSY_TIMEOUT_S", 5.0, minimum=0.0),
            stage_retry_base_delay_s=retry_base,
            stage_retry_max_delay_s=retry_max,
            instance_slots=env_int(env, "SWARM_INSTANCE_SLOTS", 4, minimum=1),
            max_active_runs=env_int(env, "SWARM_MAX_ACTIVE_RUNS", 8, minimum=1),
            queue_size=env_int(env, "SWARM_QUEUE_SIZE", 256, minimum=0),
            queue_timeout_s=env_float(env, "SWARM_QUEUE_TIMEOUT_S", 600.0, minimum=0.1),
            queue_poll_s=env_float(env, "SWARM_QUEUE_POLL_S", 0.5, minimum=0.01),
            budgets=Budgets.from_env(env),
            secrets={s.api_key_env: env[s.api_key_env] for s in instances if s.api_key_env in env},
            telemetry_env={k: v for k, v in env.items() if k.startswith("OTEL_")},
        )
