"""Instance configuration: good files and inline JSON load; bad entries name the field to fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from swarmlib import ConfigError, InstanceSpec, load_instances, parse_instances

GOOD = [
    {"name": "qwen-a", "base_url": "http://127.0.0.1:8081/v1", "model": "qwen", "temperature": 0, "seed": 1},
    {
        "name": "remote",
        "base_url": "https://api.example.com/v1",
        "model": "gpt",
        "api_key_env": "REMOTE_KEY",
        "price_input_per_mtok": 0.5,
        "price_output_per_mtok": 1.5,
    },
]


def test_file_and_inline_give_the_same_specs(tmp_path: Path) -> None:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"instances": GOOD}))
    from_file = load_instances({"SWARM_INSTANCES_FILE": str(path)})
    inline = load_instances({"SWARM_INSTANCES": json.dumps(GOOD)})
    assert from_file == inline
    assert [s.name for s in from_file] == ["qwen-a", "remote"]
    assert from_file[0].temperature == 0.0 and isinstance(from_file[0].temperature, float)
    assert from_file[1].api_key_env == "REMOTE_KEY"


def test_api_key_and_cost() -> None:
    local, remote = parse_instances(GOOD)
    assert local.api_key({}) == ""
    assert remote.api_key({"REMOTE_KEY": "sk-1"}) == "sk-1"
    with pytest.raises(ConfigError, match="REMOTE_KEY"):
        remote.api_key({})
    assert remote.cost_usd(1_000_000, 2_000_000) == pytest.approx(3.5)


def test_inline_wins_over_file(tmp_path: Path) -> None:
    specs = load_instances({"SWARM_INSTANCES": json.dumps(GOOD[:1]), "SWARM_INSTANCES_FILE": "/nonexistent"})
    assert specs == (
        InstanceSpec(name="qwen-a", base_url="http://127.0.0.1:8081/v1", model="qwen", temperature=0.0, seed=1),
    )


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ([{"base_url": "http://x/v1", "model": "m"}], "'name'"),
        ([{"name": "a", "model": "m"}], "'base_url'"),
        ([{"name": "a", "base_url": "http://x/v1", "model": ""}], "'model'"),
        ([{"name": "a", "base_url": "http://x/v1", "model": "m", "temperature": "hot"}], "'temperature'"),
        ([{"name": "a", "base_url": "http://x/v1", "model": "m", "seed": 1.5}], "'seed'"),
        ([{"name": "a", "base_url": "http://x/v1", "model": "m", "seed": True}], "'seed'"),
        ([{"name": "a", "base_url": "http://x/v1", "model": "m", "api_key": "sk"}], "api_key"),
        ([{"name": "a", "base_url": "ftp://x", "model": "m"}], "base_url"),
        ([GOOD[0], GOOD[0]], "duplicate"),
        (["qwen"], "expected an object"),
        ([], "non-empty list"),
        ({"nope": []}, "non-empty list"),
    ],
)
def test_bad_entries_name_the_field(document: object, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_instances(document)
    assert needle in str(info.value)


def test_load_errors_name_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SWARM_INSTANCES is not valid JSON"):
        load_instances({"SWARM_INSTANCES": "[{"})
    with pytest.raises(ConfigError, match="SWARM_INSTANCES_FILE"):
        load_instances({"SWARM_INSTANCES_FILE": str(tmp_path / "missing.json")})
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    with pytest.raises(ConfigError, match=r"bad\.json is not valid JSON"):
        load_instances({"SWARM_INSTANCES_FILE": str(bad)})
    with pytest.raises(ConfigError, match="no instances configured"):
        load_instances({})
