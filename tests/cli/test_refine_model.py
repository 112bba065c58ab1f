"""``swarm up --refine-model``: the instances file gains a refine-only instance on a model server of
its own, and the orchestrator is told which one it is."""

from __future__ import annotations

from pathlib import Path

from swarm_cli.localstack import REFINE_INSTANCE, StackSettings, instances_document, refine_env


def settings(**overrides: object) -> StackSettings:
    values: dict[str, object] = {
        "home": Path("/tmp/swarm-home"),
        "instances": 3,
        "model": "qwen2.5-coder-0.5b-instruct",
        "first_instance_port": 18081,
        "threads": 2,
    }
    return StackSettings(**(values | overrides))  # type: ignore[arg-type]


def test_without_a_refine_model_every_instance_answers() -> None:
    plain = settings()
    assert [e["name"] for e in instances_document(plain, plain.model)] == ["qwen-1", "qwen-2", "qwen-3"]
    assert refine_env(plain) == {}


def test_the_refine_model_gets_its_own_server_after_the_instances_servers() -> None:
    shared = settings(refine_model="qwen2.5-coder-1.5b-instruct")
    document = instances_document(shared, shared.model)
    assert [e["name"] for e in document] == ["qwen-1", "qwen-2", "qwen-3", REFINE_INSTANCE]
    refine = document[-1]
    assert refine["model"] == "qwen2.5-coder-1.5b-instruct"
    assert refine["base_url"] == "http://127.0.0.1:18082/v1"  # one shared server on 18081
    assert {e["base_url"] for e in document[:-1]} == {"http://127.0.0.1:18081/v1"}
    assert refine_env(shared) == {"SWARM_REFINE_INSTANCE": REFINE_INSTANCE}
    separate = settings(refine_model="qwen2.5-coder-1.5b-instruct", layout="separate")
    assert instances_document(separate, separate.model)[-1]["base_url"] == "http://127.0.0.1:18084/v1"
    chosen = settings(refine_model="qwen2.5-coder-1.5b-instruct", refine_port=19000)
    assert instances_document(chosen, chosen.model)[-1]["base_url"] == "http://127.0.0.1:19000/v1"
