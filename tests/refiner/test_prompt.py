"""The versioned template and the prompt's size discipline."""

from __future__ import annotations

import dataclasses

import pytest

from swarm.v1 import common_pb2, refiner_pb2
from swarm_refiner import prompt
from swarm_refiner.config import RefinerConfig
from swarmlib import ConfigError, InstanceSpec


def item(cid: str, code: str, output: str = "") -> refiner_pb2.RefineInput:
    tests = [common_pb2.TestResult(name="t1", passed=not output, output=output)]
    return refiner_pb2.RefineInput(candidate=common_pb2.CandidateCode(id=cid, code=code), tests=tests)


def test_template_ships_with_every_placeholder() -> None:
    template = prompt.load_template(prompt.TEMPLATE_VERSION)
    names = {m.group("named") for m in template.pattern.finditer(template.template) if m.group("named")}
    assert names == {"task", "candidates", "analysis", "entry_points"}
    assert "```python" in template.template
    assert "ONE complete" in template.template


def test_unknown_template_version_fails() -> None:
    with pytest.raises(FileNotFoundError):
        prompt.load_template("refine_v999")


def test_prompt_lists_candidates_best_first_with_failures() -> None:
    text = prompt.build_prompt(
        "Write a function `add(a, b)`.",
        [
            item("c1", "def add(a, b):\n    return a + b\n"),
            item("c2", "def add(a, b):\n    return a - b\n", "AssertionError: 2 != 0"),
        ],
        "",
    )
    assert text.index("Answer 1 (c1)") < text.index("Answer 2 (c2)")
    assert "AssertionError: 2 != 0" in text
    assert "(no analysis available)" in text
    assert "`add`" in text
    assert "$" not in text


def test_candidate_without_code_shows_its_reply() -> None:
    empty = refiner_pb2.RefineInput(candidate=common_pb2.CandidateCode(id="c3", text="I cannot do that."))
    assert "I cannot do that." in prompt.render_candidate(1, empty)


def test_long_inputs_stay_within_budget() -> None:
    huge_code = "def add(a, b):\n" + "    x = 1  # padding line\n" * 2_000 + "    return a + b\n"
    huge_output = "Traceback:\n" + "  frame\n" * 500 + "ValueError: the real cause"
    top = [item(f"c{i}", huge_code, huge_output) for i in range(5)]
    text = prompt.build_prompt("Write add(a, b). " * 500, top, "analysis " * 1_000)
    assert len(text) <= prompt.PROMPT_BUDGET_CHARS
    assert "Answer 1 (c0)" in text
    assert "return a + b" in text, "the tail of the best candidate survives truncation"
    assert "ValueError: the real cause" in text, "the last line of a traceback survives truncation"
    assert "characters cut" in text


def test_shorten_keeps_head_and_tail() -> None:
    text = "HEAD" + "x" * 1_000 + "TAIL"
    short = prompt.shorten(text, 100)
    assert len(short) <= 100 and short.startswith("HEAD") and short.endswith("TAIL")
    assert prompt.shorten("small", 100) == "small"


def test_config_defaults_and_overrides() -> None:
    default = RefinerConfig.from_env({})
    assert (default.address, default.llm_timeout, default.default_max_tokens) == ("127.0.0.1:50054", 60.0, 768)
    custom = RefinerConfig.from_env({"SWARM_REFINER_ADDR": "0.0.0.0:9", "SWARM_REFINER_MAX_TOKENS": "100"})
    assert custom.address == "0.0.0.0:9" and custom.default_max_tokens == 100
    with pytest.raises(ConfigError, match="SWARM_REFINER_LLM_TIMEOUT_S"):
        RefinerConfig.from_env({"SWARM_REFINER_LLM_TIMEOUT_S": "soon"})


def test_config_resolves_api_keys_without_showing_them() -> None:
    # A key is only resolved for an instance the refiner itself has configured (same name,
    # base_url and api_key_env); these two match the references below.
    own = {
        "": InstanceSpec(name="", base_url="", model="", api_key_env="KEY"),
        "r": InstanceSpec(name="r", base_url="", model="", api_key_env="MISSING"),
    }
    config = dataclasses.replace(RefinerConfig.from_env({"KEY": "sk-secret"}), instances=own)
    assert config.api_key(common_pb2.InstanceRef(api_key_env="KEY")) == "sk-secret"
    assert config.api_key(common_pb2.InstanceRef()) == ""
    assert "sk-secret" not in repr(config)
    with pytest.raises(ConfigError, match="MISSING"):
        config.api_key(common_pb2.InstanceRef(name="r", api_key_env="MISSING"))
