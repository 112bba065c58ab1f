"""Quality gates: declarative rules applied to a run's final answer, decided here in the assessor.

The rules, their parameters, the default and what each outcome does to a run are documented in
docs/quality-gates.md. The gates live in the assessor because it is the service that knows what
its evidence means (what a visible test is, which sandbox limit stopped a program: the typed
``limit`` of an assessment and of each test result, never an error's wording); the orchestrator
sends the evidence and stores the decision. A malformed configuration stops the service at
start-up with a message naming the variable, so a typo never silently opens a gate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from swarm.v1 import assessor_pb2, common_pb2
from swarmlib import ConfigError

OUTCOMES = {
    "FAIL": common_pb2.GATE_OUTCOME_FAIL,
    "NEEDS_APPROVAL": common_pb2.GATE_OUTCOME_NEEDS_APPROVAL,
}
_SCOPES = ("final", "any")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True)
class GateRule:
    """One configured rule; only the parameters of its ``kind`` matter."""

    name: str
    kind: str
    on_fail: common_pb2.GateOutcome
    minimum: float = 0.0
    min_tests: int = 0
    scope: str = "final"


@dataclass(frozen=True)
class Evidence:
    """What a rule may look at: the final answer, the other candidates, the consensus."""

    final: assessor_pb2.GateCandidate
    others: Sequence[assessor_pb2.GateCandidate]
    consensus: common_pb2.Consensus


Check = Callable[[GateRule, Evidence], tuple[bool, str]]

# How each limit is named in ``no_sandbox_violation``'s detail ("memory limit in doctest 1").
# CPU time (SIGXCPU) keeps the label of every killing signal (docs/quality-gates.md).
LIMIT_LABELS: dict[common_pb2.SandboxLimit, str] = {
    common_pb2.SANDBOX_LIMIT_WALL_TIME: "time limit",
    common_pb2.SANDBOX_LIMIT_CPU_TIME: "killed by a signal",
    common_pb2.SANDBOX_LIMIT_MEMORY: "memory limit",
    common_pb2.SANDBOX_LIMIT_OUTPUT: "output cap",
    common_pb2.SANDBOX_LIMIT_FILE_SIZE: "file size limit",
    common_pb2.SANDBOX_LIMIT_PROCESSES: "process limit",
    common_pb2.SANDBOX_LIMIT_TMP_SPACE: "/tmp size limit",
    common_pb2.SANDBOX_LIMIT_KILLED: "killed by a signal",
}


def sandbox_violations(candidate: assessor_pb2.GateCandidate) -> list[str]:
    """The sandbox limits that stopped the candidate or its failing tests, with where: "memory limit in doctest 1"."""
    places = [("its execution", candidate.limit)] + [(t.name, t.limit) for t in candidate.tests if not t.passed]
    return [
        f"{LIMIT_LABELS.get(limit, 'a sandbox limit')} in {place}"
        for place, limit in places
        if limit != common_pb2.SANDBOX_LIMIT_UNSPECIFIED
    ]


def _visible_tests_pass(rule: GateRule, ev: Evidence) -> tuple[bool, str]:
    scores = ev.final.scores
    if scores.tests_total < rule.min_tests:
        return False, f"{scores.tests_total} visible test(s), at least {rule.min_tests} required"
    if scores.tests_total == 0:
        return True, "no visible tests"
    failing = [t.name for t in ev.final.tests if t.origin == common_pb2.TEST_ORIGIN_VISIBLE and not t.passed]
    detail = f"{scores.tests_passed}/{scores.tests_total} visible tests pass"
    if scores.tests_passed < scores.tests_total:
        return False, detail + (f"; failing: {', '.join(failing[:3])}" if failing else "")
    return True, detail


def _min_overall(rule: GateRule, ev: Evidence) -> tuple[bool, str]:
    overall = ev.final.scores.overall
    passed = overall >= rule.minimum
    return passed, f"overall {overall:.3f} {'>=' if passed else '<'} {rule.minimum:.3f}"


def _consensus_reached(rule: GateRule, ev: Evidence) -> tuple[bool, str]:
    consensus = ev.consensus
    if not consensus.reached:
        return False, f"no consensus (largest cluster {consensus.share:.0%} of responses)"
    if consensus.confidence < rule.minimum:
        return False, f"consensus confidence {consensus.confidence:.2f} < {rule.minimum:.2f}"
    return True, f"consensus reached ({consensus.share:.0%}, confidence {consensus.confidence:.2f})"


def _min_generated_pass_rate(rule: GateRule, ev: Evidence) -> tuple[bool, str]:
    scores = ev.final.scores
    if scores.generated_total == 0:
        return True, "no generated tests"
    rate = scores.generated_passed / scores.generated_total
    passed = rate >= rule.minimum
    required = f" {'>=' if passed else '<'} {rule.minimum:.0%}"
    return passed, f"{scores.generated_passed}/{scores.generated_total} generated tests pass ({rate:.0%}{required})"


def _no_sandbox_violation(rule: GateRule, ev: Evidence) -> tuple[bool, str]:
    subjects = [ev.final] + (list(ev.others) if rule.scope == "any" else [])
    found = [f"{c.candidate_id}: {v}" for c in subjects for v in sandbox_violations(c)]
    if found:
        more = f" (+{len(found) - 3} more)" if len(found) > 3 else ""
        return False, "; ".join(found[:3]) + more
    return True, "no sandbox limit hit" + (" by any candidate" if rule.scope == "any" else " by the final answer")


_CHECKS: dict[str, Check] = {
    "visible_tests_pass": _visible_tests_pass,
    "min_overall": _min_overall,
    "consensus_reached": _consensus_reached,
    "min_generated_pass_rate": _min_generated_pass_rate,
    "no_sandbox_violation": _no_sandbox_violation,
}
# Parameters each kind accepts, besides "rule", "name" and "on_fail".
_PARAMS: dict[str, frozenset[str]] = {
    "visible_tests_pass": frozenset({"min_tests"}),
    "min_overall": frozenset({"min"}),
    "consensus_reached": frozenset({"min_confidence"}),
    "min_generated_pass_rate": frozenset({"min"}),
    "no_sandbox_violation": frozenset({"scope"}),
}
_REQUIRED: dict[str, frozenset[str]] = {
    "min_overall": frozenset({"min"}),
    "min_generated_pass_rate": frozenset({"min"}),
}

DEFAULT_GATES: tuple[GateRule, ...] = (
    GateRule(name="no_sandbox_violation", kind="no_sandbox_violation", on_fail=common_pb2.GATE_OUTCOME_NEEDS_APPROVAL),
)


def _fraction(source: str, where: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"{source}: {where}: {key!r} must be a number in [0, 1], got {value!r}")
    return float(value)


def _rule(source: str, index: int, raw: object) -> GateRule:
    where = f"rule #{index}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: {where}: expected an object, got {type(raw).__name__}")
    kind = raw.get("rule")
    if kind not in _CHECKS:
        raise ConfigError(f"{source}: {where}: 'rule' must be one of {sorted(_CHECKS)}, got {kind!r}")
    name = raw.get("name", kind)
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(f"{source}: {where}: 'name' must match [a-z][a-z0-9_]*, got {name!r}")
    where = f"rule #{index} ({name})"
    unknown = set(raw) - {"rule", "name", "on_fail"} - _PARAMS[kind]
    if unknown:
        allowed = sorted({"name", "on_fail"} | _PARAMS[kind])
        raise ConfigError(f"{source}: {where}: unknown field(s) {sorted(unknown)}; {kind} accepts {allowed}")
    missing = _REQUIRED.get(kind, frozenset()) - set(raw)
    if missing:
        raise ConfigError(f"{source}: {where}: {kind} needs {sorted(missing)}")
    on_fail = raw.get("on_fail")
    if not isinstance(on_fail, str) or on_fail.upper() not in OUTCOMES:
        raise ConfigError(f"{source}: {where}: 'on_fail' must be FAIL or NEEDS_APPROVAL, got {on_fail!r}")
    minimum = 0.0
    if "min" in raw:
        minimum = _fraction(source, where, "min", raw["min"])
    if "min_confidence" in raw:
        minimum = _fraction(source, where, "min_confidence", raw["min_confidence"])
    min_tests = raw.get("min_tests", 0)
    if isinstance(min_tests, bool) or not isinstance(min_tests, int) or min_tests < 0:
        raise ConfigError(f"{source}: {where}: 'min_tests' must be an integer >= 0, got {min_tests!r}")
    scope = raw.get("scope", "final")
    if scope not in _SCOPES:
        raise ConfigError(f"{source}: {where}: 'scope' must be one of {list(_SCOPES)}, got {scope!r}")
    return GateRule(
        name=name, kind=kind, on_fail=OUTCOMES[on_fail.upper()], minimum=minimum, min_tests=min_tests, scope=scope
    )


def parse_gates(document: object, source: str) -> tuple[GateRule, ...]:
    """Validate a decoded JSON list of rules; ``source`` names where it came from in error messages."""
    if not isinstance(document, list):
        raise ConfigError(f"{source}: expected a JSON list of rules (use [] for no gates)")
    rules = tuple(_rule(source, index, raw) for index, raw in enumerate(document, start=1))
    names = [rule.name for rule in rules]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: duplicate rule name(s) {duplicates}; give each rule a distinct 'name'")
    return rules


def load_gates(env: Mapping[str, str]) -> tuple[GateRule, ...]:
    """Rules from ``SWARM_GATES`` (inline JSON) or ``SWARM_GATES_FILE``; ``DEFAULT_GATES`` when neither is set."""
    inline = env.get("SWARM_GATES", "").strip()
    path = env.get("SWARM_GATES_FILE", "").strip()
    if inline and path:
        raise ConfigError("SWARM_GATES and SWARM_GATES_FILE are both set; set one")
    if inline:
        try:
            return parse_gates(json.loads(inline), "SWARM_GATES")
        except json.JSONDecodeError as exc:
            raise ConfigError(f"SWARM_GATES is not valid JSON: {exc}") from None
    if path:
        source = f"SWARM_GATES_FILE={path}"
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{source}: {exc.strerror}") from None
        try:
            return parse_gates(json.loads(text), source)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source} is not valid JSON: {exc}") from None
    return DEFAULT_GATES


_LABEL = {
    common_pb2.GATE_OUTCOME_PASS: "pass",
    common_pb2.GATE_OUTCOME_NEEDS_APPROVAL: "needs approval",
    common_pb2.GATE_OUTCOME_FAIL: "fail",
}


def evaluate(rules: Sequence[GateRule], evidence: Evidence) -> common_pb2.GateDecision:
    """Apply every rule; FAIL beats NEEDS_APPROVAL beats PASS, and the deciding rules are named."""
    results = []
    for rule in rules:
        passed, detail = _CHECKS[rule.kind](rule, evidence)
        results.append(
            common_pb2.GateRuleResult(
                name=rule.name, kind=rule.kind, passed=passed, on_fail=rule.on_fail, detail=detail
            )
        )
    failed = [r for r in results if not r.passed]
    if any(r.on_fail == common_pb2.GATE_OUTCOME_FAIL for r in failed):
        outcome = common_pb2.GATE_OUTCOME_FAIL
    elif failed:
        outcome = common_pb2.GATE_OUTCOME_NEEDS_APPROVAL
    else:
        outcome = common_pb2.GATE_OUTCOME_PASS
    deciding = [r for r in failed if r.on_fail == outcome] if failed else results
    if outcome == common_pb2.GATE_OUTCOME_PASS:
        summary = f"pass: {len(results)} rule(s) passed" if results else "pass: no gates configured"
    else:
        summary = f"{_LABEL[outcome]}: " + "; ".join(f"{r.name} ({r.detail})" for r in deciding)
    return common_pb2.GateDecision(
        outcome=outcome, rules=results, deciding_rules=[r.name for r in deciding], summary=summary
    )
