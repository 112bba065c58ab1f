"""The refinement prompt: task, best candidates with their evidence, the analysis, the ask.

Small local models have a 4k-token context shared between prompt and answer, so every part is
capped and the whole prompt has a character budget (about 4 characters a token); when over
budget, the weakest candidates are dropped before the best one is shortened.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from functools import cache
from importlib import resources

from swarm.v1 import refiner_pb2
from swarmlib import entry_points

TEMPLATE_VERSION = "refine_v1"

PROMPT_BUDGET_CHARS = 10_000
TASK_CHARS = 2_500
CODE_CHARS = 2_400
ANALYSIS_CHARS = 1_200
TEST_OUTPUT_CHARS = 300
FAILURES_SHOWN = 3
CANDIDATES_SHOWN = 3


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
    total = s.tests_total or len(item.tests)
    if total:
        passed = s.tests_passed if s.tests_total else sum(t.passed for t in item.tests)
        line += f", tests {passed}/{total} passed"
    return line


def render_candidate(rank: int, item: refiner_pb2.RefineInput, code_chars: int = CODE_CHARS) -> str:
    """One candidate: its scores, its code (or raw reply when no code was found), its failures."""
    candidate = item.candidate
    name = f"Answer {rank}" + (f" ({candidate.id})" if candidate.id else "")
    parts = [f"### {name}: {_scores_line(item)}"]
    if candidate.code.strip():
        parts.append("```python\n" + shorten(candidate.code, code_chars) + "\n```")
    else:
        parts.append("No code could be extracted; the reply was:\n" + shorten(candidate.text, code_chars // 2))
    failures = [t for t in item.tests if not t.passed]
    if failures:
        parts.append("Failing tests:")
        for test in failures[:FAILURES_SHOWN]:
            output = shorten(test.output, TEST_OUTPUT_CHARS) or "(no output)"
            parts.append(f"- {test.name}\n  " + output.replace("\n", "\n  "))
        if len(failures) > FAILURES_SHOWN:
            parts.append(f"- ... and {len(failures) - FAILURES_SHOWN} more failing tests")
    elif item.tests:
        parts.append("All its tests passed.")
    return "\n".join(parts)


def build_prompt(task: str, top: Sequence[refiner_pb2.RefineInput], analysis: str) -> str:
    """The user message for the refinement call, within ``PROMPT_BUDGET_CHARS``."""
    template = load_template()
    names = entry_points(task)
    fields = {
        "task": shorten(task, TASK_CHARS),
        "analysis": shorten(analysis, ANALYSIS_CHARS) or "(no analysis available)",
        "entry_points": ", ".join(f"`{n}`" for n in names) if names else "those the task uses",
    }
    shown = list(top[:CANDIDATES_SHOWN])
    code_chars = CODE_CHARS
    while True:
        candidates = "\n\n".join(render_candidate(i + 1, item, code_chars) for i, item in enumerate(shown))
        prompt = template.substitute(fields, candidates=candidates)
        if len(prompt) <= PROMPT_BUDGET_CHARS or (len(shown) == 1 and code_chars <= 400):
            return prompt
        if len(shown) > 1:
            shown.pop()
        else:
            code_chars = max(400, code_chars - (len(prompt) - PROMPT_BUDGET_CHARS) - 100)
