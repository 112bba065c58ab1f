"""The refinement prompt: task, best candidates with their evidence, their differences, the ask.

Small local models have a 4k-token context shared between prompt and answer, so every part is
capped and the whole prompt has a character budget (about 4 characters a token). When over
budget, the prompt gives up its parts in order of how little the model loses: the weakest
candidate first, then the secondary evidence (diff, analysis, the previous attempt's code) is
shortened, then the runner-up goes, and only then is the best candidate's code cut.

Templates are versioned files (``templates/<version>.txt``); the version in use is returned with
every prompt so a stored prompt can always be traced to the words that produced it. Every
template gets every field; ``string.Template`` ignores those a version does not use, so older
versions stay loadable and renderable.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources

from swarm.v1 import common_pb2, refiner_pb2
from swarmlib import entry_points

TEMPLATE_VERSION = "refine_v2"
# Every template shipped in ``swarm_refiner/templates``; configuration may pick any of them.
TEMPLATE_VERSIONS = ("refine_v1", "refine_v2")

PROMPT_BUDGET_CHARS = 10_000
TEST_OUTPUT_CHARS = 300
TEST_NAME_CHARS = 160
FAILURES_SHOWN = 3
DISAGREEMENT_OUTPUT_CHARS = 200
EXPLANATION_SHOWN_CHARS = 400


@dataclass(frozen=True)
class Caps:
    """How much of each part the prompt may hold; ``CAPS_LADDER`` tightens them step by step."""

    candidates: int = 3
    task: int = 2_500
    code: int = 2_400
    analysis: int = 1_200
    diff: int = 1_500
    disagreements: int = 5
    previous_code: int = 1_500


_FULL = Caps()
_LEAN = replace(_FULL, candidates=2, diff=800, analysis=600, disagreements=3, previous_code=800)
CAPS_LADDER = (
    _FULL,
    replace(_FULL, candidates=2),
    _LEAN,
    replace(_LEAN, candidates=1),
    replace(_LEAN, candidates=1, task=1_500, code=1_200, diff=600, analysis=400, previous_code=600),
    replace(_LEAN, candidates=1, task=1_200, code=600, diff=400, analysis=300, disagreements=2, previous_code=400),
)


@cache
def load_template(version: str = TEMPLATE_VERSION) -> string.Template:
    """The template shipped as package data; the version is in the file name so prompts are auditable."""
    text = resources.files("swarm_refiner.templates").joinpath(f"{version}.txt").read_text(encoding="utf-8")
    return string.Template(text)


def shorten(text: str, limit: int) -> str:
    """Keep the head and the tail (a traceback's last line, a function's return) around a marker."""
    text = text.strip()
    if len(text) <= limit:
        return text
    marker = f"\n... [{len(text) - limit} characters cut] ...\n"
    keep = max(0, limit - len(marker))
    head = keep * 2 // 3
    return text[:head].rstrip() + marker + text[len(text) - (keep - head) :].lstrip()


def _scores_line(item: refiner_pb2.RefineInput) -> str:
    s = item.scores
    line = f"overall {s.overall:.2f}, correctness {s.correctness:.2f}, completeness {s.completeness:.2f}"
    total = s.tests_total or sum(t.origin != common_pb2.TEST_ORIGIN_GENERATED for t in item.tests)
    if total:
        passed = s.tests_passed if s.tests_total else sum(t.passed for t in _task_tests(item.tests))
        line += f", tests {passed}/{total} passed"
    return line


def _task_tests(tests: Sequence[common_pb2.TestResult]) -> list[common_pb2.TestResult]:
    return [t for t in tests if t.origin != common_pb2.TEST_ORIGIN_GENERATED]


def _test_label(test: common_pb2.TestResult) -> str:
    """A test's name, marked when the models wrote it: such a test may itself be wrong."""
    name = shorten(test.name, TEST_NAME_CHARS).replace("\n", " ")
    generated = test.origin == common_pb2.TEST_ORIGIN_GENERATED and not name.lower().startswith("generated")
    return f"{name} (generated)" if generated else name


def render_failures(tests: Sequence[common_pb2.TestResult]) -> list[str]:
    """The failing tests with their output, the task's own first (they are the ground truth)."""
    failures = sorted((t for t in tests if not t.passed), key=lambda t: t.origin == common_pb2.TEST_ORIGIN_GENERATED)
    if not failures:
        return ["All its tests passed."] if tests else []
    lines = ["Failing tests:"]
    for test in failures[:FAILURES_SHOWN]:
        output = shorten(test.output, TEST_OUTPUT_CHARS) or "(no output)"
        lines.append(f"- {_test_label(test)}\n  " + output.replace("\n", "\n  "))
    if len(failures) > FAILURES_SHOWN:
        lines.append(f"- ... and {len(failures) - FAILURES_SHOWN} more failing tests")
    return lines


def render_candidate(rank: int, item: refiner_pb2.RefineInput, code_chars: int = _FULL.code) -> str:
    """One candidate: its scores, its code (or raw reply when no code was found), its failures."""
    candidate = item.candidate
    name = f"Answer {rank}" + (f" ({candidate.id})" if candidate.id else "")
    parts = [f"### {name}: {_scores_line(item)}"]
    if candidate.code.strip():
        parts.append("```python\n" + shorten(candidate.code, code_chars) + "\n```")
    else:
        parts.append("No code could be extracted; the reply was:\n" + shorten(candidate.text, code_chars // 2))
    parts.extend(render_failures(item.tests))
    return "\n".join(parts)


def _source(item: refiner_pb2.RefineInput) -> list[str]:
    text = item.candidate.code if item.candidate.code.strip() else item.candidate.text
    return [line.rstrip() for line in text.strip().splitlines()]


def _name(rank: int, item: refiner_pb2.RefineInput) -> str:
    return f"answer {rank}" + (f" ({item.candidate.id})" if item.candidate.id else "")


def render_diff(top: Sequence[refiner_pb2.RefineInput], limit: int) -> str:
    """Unified diff of the two best answers, cut at whole lines within ``limit`` characters.

    Two answers that both look plausible usually differ in the few lines that decide the failing
    tests; showing just those lines costs far less than a second full program.
    """
    if len(top) < 2:
        return "(only one answer to compare)"
    first, second = top[0], top[1]
    lines = list(
        difflib.unified_diff(
            _source(first), _source(second), fromfile=_name(1, first), tofile=_name(2, second), lineterm="", n=1
        )
    )
    if not lines:
        return "(answers 1 and 2 are the same program)"
    kept: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        if used + len(line) + 1 > limit - 40 and index < len(lines) - 1:
            kept.append(f"... ({len(lines) - index} more diff lines)")
            break
        kept.append(line)
        used += len(line) + 1
    return "```diff\n" + "\n".join(kept) + "\n```"


@dataclass(frozen=True)
class Disagreement:
    """A test the given answers do not agree on: some pass it, some fail it."""

    test: common_pb2.TestResult
    passed_by: tuple[str, ...]
    failed_by: tuple[str, ...]
    output: str


def disagreements(top: Sequence[refiner_pb2.RefineInput]) -> list[Disagreement]:
    """Tests on whose outcome the answers split, the task's own first, in order of appearance.

    A test is a probe input with an expected result; where one answer passes and another fails
    it, their outputs differ on that input, which is exactly where the merge must choose. Only
    answers that ran the test take part (a refined answer is not run on generated tests).
    """
    outcomes: dict[str, list[tuple[str, common_pb2.TestResult]]] = {}
    for rank, item in enumerate(top, start=1):
        label = item.candidate.id or f"answer {rank}"
        for test in item.tests:
            outcomes.setdefault(test.name, []).append((label, test))
    found = []
    for runs in outcomes.values():
        passed = tuple(label for label, test in runs if test.passed)
        failed = [(label, test) for label, test in runs if not test.passed]
        if passed and failed:
            output = next((t.output for _, t in failed if t.output.strip()), "")
            found.append(Disagreement(failed[0][1], passed, tuple(label for label, _ in failed), output))
    found.sort(key=lambda d: d.test.origin == common_pb2.TEST_ORIGIN_GENERATED)
    return found


def render_disagreements(top: Sequence[refiner_pb2.RefineInput], shown: int) -> str:
    found = disagreements(top)
    if not found:
        return "(none: the answers pass and fail the same tests)"
    lines = []
    for d in found[:shown]:
        output = shorten(d.output, DISAGREEMENT_OUTPUT_CHARS).replace("\n", " ") or "(no output)"
        passed, failed = ", ".join(d.passed_by), ", ".join(d.failed_by)
        lines.append(f"- {_test_label(d.test)}: passes for {passed}; fails for {failed}: {output}")
    if len(found) > shown:
        lines.append(f"- ... and {len(found) - shown} more")
    return "\n".join(lines)


def render_previous(previous: refiner_pb2.RejectedAttempt | None, round_number: int, code_chars: int) -> str:
    """The last round's rejected attempt, so the model does not hand the same program back."""
    if previous is None:
        return ""
    attempt = previous.attempt
    parts = [f"## Previous refinement attempt (round {max(1, round_number - 1)}), not kept"]
    reason = shorten(previous.reason, EXPLANATION_SHOWN_CHARS).rstrip(".") or "it scored worse than the best answer"
    parts.append(f"Why it was not kept: {reason}.")
    if previous.explanation.strip():
        parts.append("What it said it changed: " + shorten(previous.explanation, EXPLANATION_SHOWN_CHARS))
    if attempt.candidate.code.strip():
        parts.append("```python\n" + shorten(attempt.candidate.code, code_chars) + "\n```")
    elif attempt.candidate.text.strip():
        parts.append("Its reply held no program:\n" + shorten(attempt.candidate.text, code_chars // 2))
    parts.extend(render_failures(attempt.tests))
    return "\n".join(parts) + "\n\n"


def build_prompt(
    task: str,
    top: Sequence[refiner_pb2.RefineInput],
    analysis: str,
    *,
    round_number: int = 1,
    previous: refiner_pb2.RejectedAttempt | None = None,
    version: str = TEMPLATE_VERSION,
) -> str:
    """The user message for the refinement call, within ``PROMPT_BUDGET_CHARS``."""
    template = load_template(version)
    names = entry_points(task)
    prompt = ""
    for caps in CAPS_LADDER:
        shown = top[: caps.candidates]
        fields = {
            "task": shorten(task, caps.task),
            "analysis": shorten(analysis, caps.analysis) or "(no analysis available)",
            "entry_points": ", ".join(f"`{n}`" for n in names) if names else "those the task uses",
            "candidates": "\n\n".join(render_candidate(i + 1, item, caps.code) for i, item in enumerate(shown)),
            "diff": render_diff(top, caps.diff),
            "disagreements": render_disagreements(top, caps.disagreements),
            "previous": render_previous(previous, round_number, caps.previous_code),
            "round": str(max(1, round_number)),
        }
        prompt = template.substitute(fields)
        if len(prompt) <= PROMPT_BUDGET_CHARS:
            return prompt
    return prompt
