"""RefinerConfig: which instances may be sent a key is the refiner's own configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarm.v1 import common_pb2
from swarm_refiner.config import RefinerConfig
from swarmlib import ConfigError, PermissionDeniedError

REMOTE = {"name": "remote", "base_url": "https://api.example.com/v1", "model": "m", "api_key_env": "REMOTE_KEY"}


def test_starts_without_an_instance_list() -> None:
    config = RefinerConfig.from_env({})
    assert dict(config.instances) == {}
    assert config.api_key(common_pb2.InstanceRef(name="x", base_url="http://h/v1", model="m")) == ""


def test_reads_the_instances_file(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps([REMOTE]))
    config = RefinerConfig.from_env({"SWARM_INSTANCES_FILE": str(path), "REMOTE_KEY": "sk-1"})
    ref = common_pb2.InstanceRef(name="remote", base_url=REMOTE["base_url"], model="m", api_key_env="REMOTE_KEY")
    assert config.api_key(ref) == "sk-1"


def test_a_broken_instances_file_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SWARM_INSTANCES_FILE"):
        RefinerConfig.from_env({"SWARM_INSTANCES_FILE": str(tmp_path / "missing.json")})


def test_key_without_a_configured_instance_is_denied() -> None:
    config = RefinerConfig.from_env({"REMOTE_KEY": "sk-1"})
    ref = common_pb2.InstanceRef(name="remote", base_url=REMOTE["base_url"], model="m", api_key_env="REMOTE_KEY")
    with pytest.raises(PermissionDeniedError, match="configure it"):
        config.api_key(ref)


def test_template_defaults_to_v2_and_v1_stays_selectable() -> None:
    assert RefinerConfig.from_env({}).template == "refine_v2"
    assert RefinerConfig.from_env({"SWARM_REFINER_TEMPLATE": "refine_v1"}).template == "refine_v1"


def test_an_unknown_template_fails_at_start() -> None:
    with pytest.raises(ConfigError, match=r"SWARM_REFINER_TEMPLATE='refine_v9'.*refine_v1, refine_v2"):
        RefinerConfig.from_env({"SWARM_REFINER_TEMPLATE": "refine_v9"})
