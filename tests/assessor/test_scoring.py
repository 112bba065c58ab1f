"""Static scores and the config's fail-fast validation."""

from __future__ import annotations

import pytest

from swarm_assessor import scoring
from swarm_assessor.config import AssessorConfig
from swarmlib import ConfigError

TASK = 'def area(w: float, h: float) -> float:\n    """Area of a rectangle."""\n'


def test_completeness_levels() -> None:
    full = 'def area(w, h):\n    """Product."""\n    return w * h\n'
    assert scoring.completeness(full, TASK) == 1.0
    assert scoring.completeness("", TASK) == 0.0
    assert scoring.completeness("def area(w, h) return", TASK) == 0.25
    assert scoring.completeness("def other():\n    return 1\n", TASK) == pytest.approx(0.7)
    for stub in (
        "def area(w, h):\n    pass\n",
        "def area(w, h):\n    ...\n",
        "def area(w, h):\n    raise NotImplementedError\n",
    ):
        assert scoring.completeness(stub, TASK) == pytest.approx(0.8), stub
    assert scoring.completeness("def area(w, h):\n    return w * h  # TODO: validate\n", TASK) == pytest.approx(0.8)


def test_style_rewards_tidy_code() -> None:
    tidy = 'def area(width, height):\n    """Multiply because rectangles."""\n    return width * height\n'
    messy = (
        "from math import *\n\ndef Area(W, H):\n    try:\n        print(W)\n        return W * H\n"
        "    except:\n        return 0  " + "#" * 120 + "\n"
    )
    assert scoring.style(tidy) == 1.0
    assert scoring.style(messy) < 0.3
    assert scoring.style("def (") == 0.0


def test_correctness() -> None:
    assert scoring.correctness(3, 4, ran_cleanly=False) == 0.75
    assert scoring.correctness(0, 0, ran_cleanly=True) == 1.0
    assert scoring.correctness(0, 0, ran_cleanly=False) == 0.0


def test_config_from_env_defaults_and_overrides() -> None:
    config = AssessorConfig.from_env({"SWARM_ASSESSOR_TIMEOUT_S": "2.5", "OTEL_SERVICE_NAME": "x", "HOME": "/root"})
    assert config.address == "127.0.0.1:50053"
    assert config.timeout_s == 2.5
    assert config.sandbox.output_cap_bytes == 64 * 1024
    assert config.sandbox.backend == "local"
    assert config.max_concurrency >= 1
    assert dict(config.telemetry_env) == {"OTEL_SERVICE_NAME": "x"}


@pytest.mark.parametrize(
    "env",
    [
        {"SWARM_ASSESSOR_TIMEOUT_S": "soon"},
        {"SWARM_ASSESSOR_TIMEOUT_S": "0"},
        {"SWARM_SANDBOX_MEMORY_MB": "8"},
        {"SWARM_SANDBOX": "docker"},
        {"SWARM_ASSESSOR_MAX_CONCURRENCY": "0"},
        {"SWARM_ASSESSOR_MAX_CANDIDATES": "-1"},
    ],
)
def test_config_rejects_bad_values(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match=r"SWARM_(ASSESSOR|SANDBOX)"):
        AssessorConfig.from_env(env)


def test_stubs_are_recognised() -> None:
    for stub in (
        TASK + "    pass\n",
        'def area(w, h):\n    """Area."""\n    ...\n',
        "def area(w, h):\n    raise NotImplementedError('later')\n",
    ):
        assert scoring.is_stub(stub, TASK), stub
    assert not scoring.is_stub("def area(w, h):\n    return w * h  # TODO: validate\n", TASK)
    assert not scoring.is_stub("def helper():\n    pass\n\ndef area(w, h):\n    return w * h\n", TASK)
    assert scoring.is_stub("def anything():\n    pass\n", "Write a program.")
    assert not scoring.is_stub("def (", TASK)
