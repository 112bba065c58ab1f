"""run_service: one entry point for every ``python -m swarm_<service>``."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from swarmlib import ConfigError, SwarmServer, run_service

ROOT = Path(__file__).resolve().parents[2]


def _refuse(env: Mapping[str, str]) -> object:
    raise ConfigError(f"SWARM_X={env.get('SWARM_X', '')!r} is not a number")


async def _never(config: object) -> tuple[SwarmServer, int]:
    raise AssertionError("no server is created for a bad config")


def test_config_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_service("demo", _refuse, _never, lambda config: 1.0, env={"SWARM_X": "abc"})
    assert info.value.code == 2
    assert capsys.readouterr().err == "swarm-demo: SWARM_X='abc' is not a number\n"


def test_bad_log_level_is_a_config_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_service("demo", _refuse, _never, lambda config: 1.0, env={"SWARM_LOG_LEVEL": "chatty"})
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("swarm-demo: SWARM_LOG_LEVEL='CHATTY' is not a log level")


@pytest.mark.parametrize(
    "service, variable", [("refiner", "SWARM_REFINER_GRACE_S"), ("assessor", "SWARM_ASSESSOR_GRACE_S")]
)
def test_services_exit_2_on_bad_config(service: str, variable: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SWARM_", "OTEL_"))}
    env[variable] = "soon"
    proc = subprocess.run(
        [sys.executable, "-m", f"swarm_{service}"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"swarm-{service}: {variable}='soon' is not a number"
