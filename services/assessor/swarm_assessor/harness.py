"""The assessor's side of a sandboxed execution: the spec shared by a request's candidates, each
candidate's execution (``runner`` as the program, its input as a JSON file), and the report read back.

What the runner does inside the sandbox is described in docs/assessment.md.
"""

from __future__ import annotations

import ast
import json
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from swarmlib import SandboxLimit, parse_python, unparse_python

from . import runner
from .probes import instrument
from .tests_from_task import TaskTest

if TYPE_CHECKING:
    from .runner import Spec, TestSpec

OUTPUT_CAP = 500
GENERATED_OUTPUT_CAP = 160
# Read once: every execution ships the same program, only its input files differ.
_RUNNER_SOURCE = Path(runner.__file__).read_text(encoding="utf-8")


@dataclass(frozen=True)
class TestOutcome:
    """One test's verdict as reported from inside the sandbox.

    ``error`` is None for a pass, else the exception type name (``AssertionError`` for a wrong
    answer, doctest mismatches included), ``"timeout"``, or ``"deadline"`` when the test was not
    run because the candidate's time was up. ``limit`` is the sandbox limit that stopped the test.
    """

    passed: bool
    output: str
    error: str | None = None
    limit: SandboxLimit = SandboxLimit.NONE


@dataclass(frozen=True)
class Report:
    """What the runner printed: whether the code loaded (and if not, why), and verdicts by test index."""

    loaded: bool | None
    load_error: str
    outcomes: dict[int, TestOutcome]
    finished: bool
    behaviour: str = ""
    skipped: int = 0
    load_limit: SandboxLimit = SandboxLimit.NONE
    # What the execution used, as the runner measured it at its end (0: it never got there).
    cpu_ms: float = 0.0
    peak_rss_kb: int = 0
    observations: tuple[str | None, ...] = ()  # each probe's, when the spec asked for them


def _left_side(statement: str) -> str:
    """For ``assert a == b`` the source of ``a``, so a failure can show what it evaluated to."""
    tree = parse_python(statement)
    node = tree.body[0] if tree is not None and tree.body else None
    if isinstance(node, ast.Assert) and isinstance(node.test, ast.Compare) and len(node.test.ops) == 1:
        return unparse_python(node.test.left) or ""
    return ""


@dataclass(frozen=True)
class Plan:
    """What every candidate of one request runs: tests (visible first), probes, time budgets."""

    tests: list[TaskTest]
    probes: list[str]
    entry_points: list[str]
    alias: str
    budget_s: float
    generated_budget_s: float
    probe_budget_s: float
    deadline_s: float
    # Probes from this index on are inputs no test stands behind (``typed_inputs``): the runner
    # reports their observations, and the service keeps only the informative ones.
    untested_from: int | None = None

    @property
    def has_untested(self) -> bool:
        return self.untested_from is not None and self.untested_from < len(self.probes)


def _test_specs(plan: Plan) -> list[TestSpec]:
    index = {probe: i for i, probe in enumerate(plan.probes)}
    return [
        {
            "kind": t.kind,
            "source": instrument(t.source, index, plan.entry_points),
            "want": t.want,
            "exc_msg": t.exc_msg,
            "left": _left_side(t.source) if t.kind == "assert" else "",
            "budget": plan.generated_budget_s if t.generated else plan.budget_s,
            "cap": GENERATED_OUTPUT_CAP if t.generated else OUTPUT_CAP,
        }
        for t in plan.tests
    ]


def build_spec(plan: Plan) -> str:
    """The part of the program shared by every candidate (tests instrumented once per request)."""
    spec: Spec = {
        "cap": OUTPUT_CAP,
        "tests": _test_specs(plan),
        "probes": plan.probes,
        "probe_budget": plan.probe_budget_s,
        "deadline": plan.deadline_s,
        "alias": plan.alias,
        "untested_from": len(plan.probes) if plan.untested_from is None else plan.untested_from,
    }
    return json.dumps(spec)


@dataclass(frozen=True)
class Execution:
    """One candidate's sandbox run: the runner as the program, its input as a file beside it."""

    program: str
    files: dict[str, str]
    marker: str  # what the runner's result lines start with


def build_execution(code: str, shared_spec: str) -> Execution:
    """The execution of ``code`` against ``shared_spec`` (``build_spec``), with a fresh random marker."""
    marker = f"@@swarm-{secrets.token_hex(8)}@@"
    # The shared spec is already JSON (serialised once per request): it is placed, not re-encoded.
    data = f'{{"marker": {json.dumps(marker)}, "code": {json.dumps(code)}, "spec": {shared_spec}}}'
    return Execution(_RUNNER_SOURCE, {runner.INPUT_FILE: data}, marker)


def _limit(word: object) -> SandboxLimit:
    try:
        return SandboxLimit(str(word))
    except ValueError:
        return SandboxLimit.NONE


def parse_report(stdout: str, marker: str) -> Report:
    """Collect the marked JSON lines; anything else the candidate printed is ignored."""
    loaded: bool | None = None
    load_error = ""
    load_limit = SandboxLimit.NONE
    outcomes: dict[int, TestOutcome] = {}
    finished = False
    behaviour = ""
    observations: tuple[str | None, ...] = ()
    skipped = 0
    cpu_ms, peak_rss_kb = 0.0, 0
    for line in stdout.splitlines():
        if not line.startswith(marker):
            continue
        try:
            record = json.loads(line[len(marker) :])
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        kind = record.get("kind")
        if kind == "load":
            loaded = bool(record.get("ok"))
            load_error = str(record.get("error", ""))
            load_limit = _limit(record.get("limit"))
        elif kind == "test" and isinstance(record.get("index"), int):
            error = record.get("error")
            outcomes[record["index"]] = TestOutcome(
                bool(record.get("passed")),
                str(record.get("output", "")),
                error if isinstance(error, str) else None,
                _limit(record.get("limit")),
            )
        elif kind == "done":
            finished = True
            behaviour = str(record.get("behaviour", ""))
            skipped = record.get("skipped", 0) if isinstance(record.get("skipped"), int) else 0
            seen = record.get("observations")
            if isinstance(seen, list):
                observations = tuple(v if isinstance(v, str) else None for v in seen)
        elif kind == "usage":
            cpu, rss = record.get("cpu_ms"), record.get("peak_rss_kb")
            cpu_ms = float(cpu) if isinstance(cpu, int | float) and cpu >= 0 else 0.0
            peak_rss_kb = rss if isinstance(rss, int) and rss >= 0 else 0
    return Report(
        loaded, load_error, outcomes, finished, behaviour, skipped, load_limit, cpu_ms, peak_rss_kb, observations
    )
