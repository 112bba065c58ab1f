"""Configuration: defaults, overrides and fail-fast errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from swarm_collator.config import DEFAULT_MODEL_NAME, CollatorConfig
from swarmlib import ConfigError


def test_defaults_use_the_bundled_model() -> None:
    config = CollatorConfig.from_env({})
    assert config.address == "127.0.0.1:50052"
    assert config.similarity_threshold == 0.9
    assert config.consensus_share == 0.5
    assert config.max_candidates == 64
    assert config.torch_threads == 1
    assert config.embedding_model_name == DEFAULT_MODEL_NAME
    assert (config.embedding_model_path / "modules.json").is_file()


def test_overrides_and_telemetry_env() -> None:
    config = CollatorConfig.from_env(
        {
            "SWARM_COLLATOR_ADDR": "0.0.0.0:9000",
            "SWARM_PLAINTEXT": "true",  # off loopback, plaintext must be asked for (docs/tls.md)
            "SWARM_COLLATOR_SIMILARITY_THRESHOLD": "0.8",
            "SWARM_COLLATOR_CONSENSUS_SHARE": "0.75",
            "SWARM_COLLATOR_MAX_CANDIDATES": "8",
            "OTEL_SERVICE_NAME": "x",
            "UNRELATED": "y",
        }
    )
    assert (config.address, config.similarity_threshold, config.consensus_share, config.max_candidates) == (
        "0.0.0.0:9000",
        0.8,
        0.75,
        8,
    )
    assert dict(config.telemetry_env) == {"OTEL_SERVICE_NAME": "x"}


def test_model_override(tmp_path: Path) -> None:
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "modules.json").write_text("[]")
    config = CollatorConfig.from_env({"SWARM_EMBEDDING_MODEL": str(model)})
    assert config.embedding_model_path == model
    assert config.embedding_model_name == "my-model"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("SWARM_COLLATOR_SIMILARITY_THRESHOLD", "0", r"must be in \(0, 1\]"),
        ("SWARM_COLLATOR_SIMILARITY_THRESHOLD", "1.5", r"must be in \(0, 1\]"),
        ("SWARM_COLLATOR_SIMILARITY_THRESHOLD", "high", "is not a number"),
        ("SWARM_COLLATOR_CONSENSUS_SHARE", "-0.1", r"must be in \(0, 1\]"),
        ("SWARM_COLLATOR_MAX_CANDIDATES", "0", "must be >= 1"),
        ("SWARM_COLLATOR_TORCH_THREADS", "0", "must be >= 1"),
        ("SWARM_EMBEDDING_MODEL", "/nonexistent/model", "not a local sentence-transformers model directory"),
    ],
)
def test_bad_values_fail_fast(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        CollatorConfig.from_env({name: value})
    assert name in str(info.value)
