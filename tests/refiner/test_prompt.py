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


def placeholders(version: str) -> set[str]:
    template = prompt.load_template(version)
    return {m.group("named") for m in template.pattern.finditer(template.template) if m.group("named")}


def test_template_ships_with_every_placeholder() -> None:
    template = prompt.load_template("refine_v1")
    assert placeholders("refine_v1") == {"task", "candidates", "analysis", "entry_points"}
    assert "```python" in template.template
    assert "ONE complete" in template.template


def test_v2_template_adds_differences_disagreements_previous_attempt_and_changes() -> None:
    assert prompt.TEMPLATE_VERSION == "refine_v2"
    assert prompt.TEMPLATE_VERSIONS == ("refine_v1", "refine_v2")
    template = prompt.load_template("refine_v2").template
    assert placeholders("refine_v2") == {
        "task",
        "candidates",
        "analysis",
        "entry_points",
        "diff",
        "disagreements",
        "previous",
        "round",
    }
    assert "ONE complete" in template and "```python" in template
    assert 'starts with "Changes:"' in template


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
    # Off loopback, plaintext must be asked for (docs/tls.md).
    custom = RefinerConfig.from_env(
        {"SWARM_REFINER_ADDR": "0.0.0.0:9", "SWARM_PLAINTEXT": "true", "SWARM_REFINER_MAX_TOKENS": "100"}
    )
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


VISIBLE, GENERATED = common_pb2.TEST_ORIGIN_VISIBLE, common_pb2.TEST_ORIGIN_GENERATED
OFF_BY_ONE = "def fib(n):\n    a, b = 0, 1\n    for _ in range(n - 1):\n        a, b = b, a + b\n    return a\n"
RECURSIVE = "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n"
FIB_TASK = "Write a function fib(n).\n>>> fib(1)\n1\n"


def result(name: str, passed: bool, output: str = "", origin: int = VISIBLE) -> common_pb2.TestResult:
    return common_pb2.TestResult(name=name, passed=passed, output=output, origin=origin)  # type: ignore[arg-type]


def fib_top() -> list[refiner_pb2.RefineInput]:
    """An off-by-one loop that ranks first and a correct recursion: they split on fib(1) and fib(5)."""
    loop = refiner_pb2.RefineInput(
        candidate=common_pb2.CandidateCode(id="c1", code=OFF_BY_ONE),
        scores=common_pb2.Scores(overall=0.7, correctness=0.5, completeness=1.0, tests_passed=1, tests_total=2),
        tests=[
            result("doctest 1: fib(0) == 0", True),
            result("doctest 2: fib(1) == 1", False, "AssertionError: fib(1) returned 0"),
            result("generated 1: fib(5) == 5", False, "AssertionError: fib(5) returned 3", GENERATED),
            result("generated 2: fib(2) == 1", True, origin=GENERATED),
        ],
    )
    recursion = refiner_pb2.RefineInput(
        candidate=common_pb2.CandidateCode(id="c3", code=RECURSIVE),
        scores=common_pb2.Scores(overall=0.6, correctness=1.0, completeness=1.0, tests_passed=2, tests_total=2),
        tests=[
            result("doctest 1: fib(0) == 0", True),
            result("doctest 2: fib(1) == 1", True),
            result("generated 1: fib(5) == 5", True, origin=GENERATED),
            result("generated 2: fib(2) == 1", True, origin=GENERATED),
        ],
    )
    return [loop, recursion]


def section(text: str, title: str) -> str:
    """The body of one ``## title`` section of a rendered prompt."""
    start = text.index(f"## {title}\n") + len(title) + 4
    end = text.find("\n## ", start)
    return text[start : end if end >= 0 else None]


def test_v2_shows_the_diff_of_the_two_best_answers() -> None:
    text = prompt.build_prompt(FIB_TASK, fib_top(), "analysis")
    diff = section(text, "Differences between answers 1 and 2")
    assert diff.startswith("```diff\n--- answer 1 (c1)\n+++ answer 2 (c3)")
    assert "-    for _ in range(n - 1):" in diff
    assert "+    return fib(n - 1) + fib(n - 2)" in diff
    assert "refinement round 1" in text


def test_v2_lists_the_inputs_the_answers_disagree_on_task_tests_first() -> None:
    text = prompt.build_prompt(FIB_TASK, fib_top(), "")
    lines = section(text, "Inputs on which the answers disagree").strip().splitlines()
    assert lines == [
        "- doctest 2: fib(1) == 1: passes for c3; fails for c1: AssertionError: fib(1) returned 0",
        "- generated 1: fib(5) == 5: passes for c3; fails for c1: AssertionError: fib(5) returned 3",
    ]
    # Agreed tests (both pass fib(0) and fib(2)) are no disagreement.
    assert "fib(2) == 1" not in section(text, "Inputs on which the answers disagree")


def test_v2_shows_failing_tests_with_output_task_tests_first() -> None:
    text = prompt.build_prompt(FIB_TASK, fib_top(), "")
    answer1 = section(text, "Best answers so far (best first)").split("### Answer 2")[0]
    failing = answer1[answer1.index("Failing tests:") :]
    assert failing.index("doctest 2: fib(1) == 1\n  AssertionError: fib(1) returned 0") < failing.index(
        "generated 1: fib(5) == 5\n  AssertionError: fib(5) returned 3"
    )
    assert "tests 1/2 passed" in answer1, "generated tests do not count as the task's tests"


def test_disagreements_only_compare_answers_that_ran_the_test() -> None:
    refined = refiner_pb2.RefineInput(
        candidate=common_pb2.CandidateCode(id="r1", code=RECURSIVE),
        tests=[result("doctest 2: fib(1) == 1", True)],
    )
    found = prompt.disagreements([refined, fib_top()[0]])
    assert [(d.test.name, d.passed_by, d.failed_by) for d in found] == [("doctest 2: fib(1) == 1", ("r1",), ("c1",))]


def test_v2_without_disagreement_or_second_answer_says_so() -> None:
    (first, _) = fib_top()
    text = prompt.build_prompt(FIB_TASK, [first], "")
    assert section(text, "Differences between answers 1 and 2").strip() == "(only one answer to compare)"
    assert section(text, "Inputs on which the answers disagree").strip().startswith("(none")
    same = prompt.build_prompt(FIB_TASK, [first, first], "")
    assert "(answers 1 and 2 are the same program)" in same
    assert "Previous refinement attempt" not in text


def test_v2_shows_the_rejected_previous_attempt_and_why() -> None:
    previous = refiner_pb2.RejectedAttempt(
        attempt=refiner_pb2.RefineInput(
            candidate=common_pb2.CandidateCode(id="r1", code="def fib(n):\n    return n * 2\n"),
            tests=[result("doctest 2: fib(1) == 1", False, "AssertionError: fib(1) returned 2")],
        ),
        reason="assessed 0.400 < best c1 0.700.",
        explanation="- Doubled n for speed.",
    )
    text = prompt.build_prompt(FIB_TASK, fib_top(), "", round_number=2, previous=previous)
    shown = section(text, "Previous refinement attempt (round 1), not kept")
    assert "Why it was not kept: assessed 0.400 < best c1 0.700.\n" in shown
    assert "What it said it changed: - Doubled n for speed." in shown
    assert "return n * 2" in shown and "AssertionError: fib(1) returned 2" in shown
    assert "refinement round 2" in text
    assert text.index("## Previous refinement attempt") < text.index("## What to write")
    no_code = refiner_pb2.RejectedAttempt(
        attempt=refiner_pb2.RefineInput(candidate=common_pb2.CandidateCode(text="I am not sure.")),
        reason="the reply held no code",
    )
    assert "Its reply held no program:\nI am not sure." in prompt.build_prompt(
        FIB_TASK, fib_top(), "", round_number=3, previous=no_code
    )


def test_v1_stays_renderable_without_the_new_sections() -> None:
    text = prompt.build_prompt(FIB_TASK, fib_top(), "analysis", version="refine_v1")
    assert "Answer 1 (c1)" in text and "AssertionError: fib(1) returned 0" in text
    assert "```diff" not in text and "disagree" not in text
    assert "$" not in text


def test_v2_with_every_part_huge_stays_within_budget_keeping_the_essentials() -> None:
    huge_code = "def fib(n):\n" + "    x = 1  # padding line\n" * 2_000 + "    return a\n"
    other_code = "def fib(n):\n" + "    y = 2  # other padding\n" * 2_000 + "    return b\n"
    huge_output = "Traceback:\n" + "  frame\n" * 500 + "ValueError: the real cause"
    top = []
    for i in range(5):
        tests = [result(f"doctest {j}: fib({j}) == {j} " + "x" * 300, i % 2 == 0, huge_output) for j in range(9)]
        code = huge_code if i % 2 == 0 else other_code
        top.append(refiner_pb2.RefineInput(candidate=common_pb2.CandidateCode(id=f"c{i}", code=code), tests=tests))
    previous = refiner_pb2.RejectedAttempt(
        attempt=refiner_pb2.RefineInput(
            candidate=common_pb2.CandidateCode(id="r1", code=huge_code), tests=top[1].tests
        ),
        reason="dropped " * 50,
        explanation="changed " * 500,
    )
    text = prompt.build_prompt("Write fib(n). " * 500, top, "analysis " * 1_000, round_number=2, previous=previous)
    assert len(text) <= prompt.PROMPT_BUDGET_CHARS
    assert "Answer 1 (c0)" in text and "return a" in text, "the best answer's tail survives"
    assert "more diff lines" in text, "the diff is cut at whole lines"
    assert "ValueError: the real cause" in text
    for title in ("Differences between answers 1 and 2", "Inputs on which the answers disagree", "What to write"):
        assert f"## {title}" in text
    assert "Previous refinement attempt (round 1)" in text


def test_the_budget_ladder_only_ever_tightens() -> None:
    for looser, tighter in zip(prompt.CAPS_LADDER, prompt.CAPS_LADDER[1:], strict=False):
        assert all(getattr(tighter, f) <= getattr(looser, f) for f in vars(looser))
        assert tighter != looser
