"""Quality gates: configuration that fails fast, each rule, the outcome order, and the RPC over a real channel."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from swarm.v1 import assessor_pb2, assessor_pb2_grpc, common_pb2
from swarm_assessor.config import AssessorConfig
from swarm_assessor.gates import (
    DEFAULT_GATES,
    LIMIT_LABELS,
    Evidence,
    evaluate,
    load_gates,
    parse_gates,
    sandbox_violations,
)
from swarm_assessor.server import create_server
from swarmlib import ConfigError

PASS = common_pb2.GATE_OUTCOME_PASS
NO_LIMIT = common_pb2.SANDBOX_LIMIT_UNSPECIFIED
NEEDS_APPROVAL = common_pb2.GATE_OUTCOME_NEEDS_APPROVAL
FAIL = common_pb2.GATE_OUTCOME_FAIL

STRICT = [
    {"rule": "visible_tests_pass", "on_fail": "FAIL"},
    {"rule": "min_overall", "min": 0.8, "on_fail": "NEEDS_APPROVAL"},
    {"name": "overall_floor", "rule": "min_overall", "min": 0.3, "on_fail": "FAIL"},
    {"rule": "consensus_reached", "on_fail": "needs_approval"},
    {"rule": "no_sandbox_violation", "scope": "any", "on_fail": "NEEDS_APPROVAL"},
]


def candidate(
    cid: str = "c1",
    *,
    passed: int = 3,
    total: int = 3,
    overall: float = 0.9,
    error: str = "",
    limit: common_pb2.SandboxLimit = common_pb2.SANDBOX_LIMIT_UNSPECIFIED,
    outputs: tuple[str, ...] = (),
    limits: tuple[common_pb2.SandboxLimit, ...] = (),
) -> assessor_pb2.GateCandidate:
    """A final answer or another candidate; ``outputs`` and ``limits`` are its failing generated tests."""
    tests = [
        common_pb2.TestResult(name=f"doctest {i + 1}", passed=i < passed, origin=common_pb2.TEST_ORIGIN_VISIBLE)
        for i in range(total)
    ]
    failing = zip(outputs or ("",) * len(limits), limits or (NO_LIMIT,) * len(outputs), strict=True)
    for i, (output, hit) in enumerate(failing):
        tests.append(common_pb2.TestResult(name=f"generated {i + 1}", passed=False, output=output, limit=hit))
    scores = common_pb2.Scores(overall=overall, tests_passed=passed, tests_total=total)
    return assessor_pb2.GateCandidate(candidate_id=cid, scores=scores, tests=tests, error=error, limit=limit)


def evidence(
    final: assessor_pb2.GateCandidate, *others: assessor_pb2.GateCandidate, consensus: bool = True
) -> Evidence:
    return Evidence(
        final=final, others=list(others), consensus=common_pb2.Consensus(reached=consensus, share=0.67, confidence=0.6)
    )


def test_a_good_answer_passes_every_rule() -> None:
    decision = evaluate(parse_gates(STRICT, "SWARM_GATES"), evidence(candidate()))
    assert decision.outcome == PASS
    assert [r.name for r in decision.rules] == [
        "visible_tests_pass",
        "min_overall",
        "overall_floor",
        "consensus_reached",
        "no_sandbox_violation",
    ]
    assert all(r.passed for r in decision.rules) and list(decision.deciding_rules) == [r.name for r in decision.rules]
    assert decision.summary == "pass: 5 rule(s) passed"


def test_approval_rules_hold_and_name_what_decided() -> None:
    decision = evaluate(parse_gates(STRICT, "SWARM_GATES"), evidence(candidate(overall=0.6), consensus=False))
    assert decision.outcome == NEEDS_APPROVAL
    assert list(decision.deciding_rules) == ["min_overall", "consensus_reached"]
    assert "overall 0.600 < 0.800" in decision.summary and "no consensus" in decision.summary


def test_a_fail_rule_beats_approval_rules() -> None:
    decision = evaluate(parse_gates(STRICT, "SWARM_GATES"), evidence(candidate(passed=2, overall=0.2), consensus=False))
    assert decision.outcome == FAIL
    assert list(decision.deciding_rules) == ["visible_tests_pass", "overall_floor"]
    assert "2/3 visible tests pass; failing: doctest 3" in decision.summary


def test_sandbox_limits_are_read_from_the_execution_and_the_failing_tests() -> None:
    outputs = (
        "MemoryError",
        "BlockingIOError: [Errno 11] Resource temporarily unavailable",
        "timed out after 1.5s",
        "OSError: [Errno 27] File too large",
    )
    limits = (
        common_pb2.SANDBOX_LIMIT_MEMORY,
        common_pb2.SANDBOX_LIMIT_PROCESSES,
        common_pb2.SANDBOX_LIMIT_WALL_TIME,
        common_pb2.SANDBOX_LIMIT_FILE_SIZE,
    )
    found = sandbox_violations(candidate(outputs=outputs, limits=limits))
    assert found == [
        "memory limit in generated 1",
        "process limit in generated 2",
        "time limit in generated 3",
        "file size limit in generated 4",
    ]
    capped = candidate(error="stdout exceeded 65536 bytes", limit=common_pb2.SANDBOX_LIMIT_OUTPUT)
    assert sandbox_violations(capped) == ["output cap in its execution"]
    assert sandbox_violations(candidate(outputs=("AssertionError: expected 1, got 2",))) == []
    # The wording decides nothing: only the limit the assessor set does.
    assert sandbox_violations(candidate(error="stdout exceeded 65536 bytes", outputs=outputs)) == []
    passing = candidate()
    passing.tests[0].limit = common_pb2.SANDBOX_LIMIT_MEMORY
    assert sandbox_violations(passing) == []  # a test that passed was not stopped


@pytest.mark.parametrize(
    "limit", [v for v in common_pb2.SandboxLimit.values() if v != NO_LIMIT], ids=common_pb2.SandboxLimit.Name
)
def test_every_sandbox_limit_is_read_by_no_sandbox_violation(limit: common_pb2.SandboxLimit) -> None:
    """Every value of the enum, so a new limit without a label or without this rule reading it fails here."""
    label = LIMIT_LABELS[limit]
    rules = parse_gates([{"rule": "no_sandbox_violation", "scope": "any", "on_fail": "FAIL"}], "SWARM_GATES")
    for subject, where in [(candidate(limit=limit), "its execution"), (candidate(limits=(limit,)), "generated 1")]:
        decision = evaluate(rules, evidence(candidate("c0"), subject))
        assert decision.outcome == FAIL, common_pb2.SandboxLimit.Name(limit)
        assert decision.rules[0].detail == f"c1: {label} in {where}"
    assert set(LIMIT_LABELS) == set(common_pb2.SandboxLimit.values()) - {NO_LIMIT}


def test_no_limit_is_no_violation() -> None:
    rules = parse_gates([{"rule": "no_sandbox_violation", "scope": "any", "on_fail": "FAIL"}], "SWARM_GATES")
    clean = candidate(limit=NO_LIMIT, limits=(NO_LIMIT,))
    decision = evaluate(rules, evidence(clean, clean))
    assert decision.outcome == PASS and decision.rules[0].detail == "no sandbox limit hit by any candidate"


def test_sandbox_scope_final_or_any() -> None:
    hog = candidate(
        "c2",
        error="killed by SIGKILL (CPU-time hard limit, the kernel's OOM killer, or the program itself)",
        limit=common_pb2.SANDBOX_LIMIT_KILLED,
    )
    final_only = parse_gates([{"rule": "no_sandbox_violation", "on_fail": "NEEDS_APPROVAL"}], "SWARM_GATES")
    assert evaluate(final_only, evidence(candidate(), hog)).outcome == PASS
    decision = evaluate(parse_gates(STRICT, "SWARM_GATES"), evidence(candidate(), hog))
    assert decision.outcome == NEEDS_APPROVAL and list(decision.deciding_rules) == ["no_sandbox_violation"]
    assert "c2: killed by a signal in its execution" in decision.summary


def test_visible_tests_rule_can_require_tests_and_generated_rate_is_checked() -> None:
    rules = parse_gates(
        [
            {"rule": "visible_tests_pass", "min_tests": 1, "on_fail": "NEEDS_APPROVAL"},
            {"rule": "min_generated_pass_rate", "min": 0.5, "on_fail": "FAIL"},
        ],
        "SWARM_GATES",
    )
    final = candidate(passed=0, total=0)
    final.scores.generated_passed, final.scores.generated_total = 1, 4
    decision = evaluate(rules, evidence(final))
    assert decision.outcome == FAIL
    assert [r.detail for r in decision.rules] == [
        "0 visible test(s), at least 1 required",
        "1/4 generated tests pass (25% < 50%)",
    ]


def test_no_gates_pass_and_the_default_only_holds_sandbox_violations() -> None:
    assert evaluate((), evidence(candidate(passed=0, overall=0.0))).summary == "pass: no gates configured"
    assert load_gates({}) == DEFAULT_GATES
    assert evaluate(DEFAULT_GATES, evidence(candidate(passed=0, overall=0.1), consensus=False)).outcome == PASS
    memory = candidate(outputs=("MemoryError",), limits=(common_pb2.SANDBOX_LIMIT_MEMORY,))
    assert evaluate(DEFAULT_GATES, evidence(memory)).outcome == NEEDS_APPROVAL


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "SWARM_GATES is not valid JSON"),
        ('{"rule": "min_overall"}', "SWARM_GATES: expected a JSON list of rules"),
        ('[{"rule": "vibes", "on_fail": "FAIL"}]', "SWARM_GATES: rule #1: 'rule' must be one of"),
        (
            '[{"rule": "min_overall", "on_fail": "FAIL"}]',
            "SWARM_GATES: rule #1 (min_overall): min_overall needs ['min']",
        ),
        ('[{"rule": "min_overall", "min": 1.5, "on_fail": "FAIL"}]', "'min' must be a number in [0, 1], got 1.5"),
        ('[{"rule": "consensus_reached"}]', "'on_fail' must be FAIL or NEEDS_APPROVAL, got None"),
        ('[{"rule": "consensus_reached", "on_fail": "WARN"}]', "'on_fail' must be FAIL or NEEDS_APPROVAL, got 'WARN'"),
        ('[{"rule": "consensus_reached", "min": 0.5, "on_fail": "FAIL"}]', "unknown field(s) ['min']"),
        ('[{"rule": "no_sandbox_violation", "scope": "all", "on_fail": "FAIL"}]', "'scope' must be one of"),
        (
            '[{"rule": "consensus_reached", "on_fail": "FAIL"}, {"rule": "consensus_reached", "on_fail": "FAIL"}]',
            "duplicate rule name(s) ['consensus_reached']",
        ),
    ],
)
def test_bad_configuration_names_the_variable_and_the_fix(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_gates({"SWARM_GATES": value})
    assert message in str(error.value)


def test_gates_file_is_read_and_named_in_errors(tmp_path: Path) -> None:
    path = tmp_path / "gates.json"
    path.write_text(json.dumps(STRICT))
    assert [r.name for r in load_gates({"SWARM_GATES_FILE": str(path)})][-1] == "no_sandbox_violation"
    path.write_text('[{"rule": "min_overall", "min": "high", "on_fail": "FAIL"}]')
    with pytest.raises(ConfigError, match=re.escape(f"SWARM_GATES_FILE={path}: rule #1")):
        load_gates({"SWARM_GATES_FILE": str(path)})
    with pytest.raises(ConfigError, match=r"SWARM_GATES_FILE=.*nope\.json: No such file"):
        load_gates({"SWARM_GATES_FILE": str(tmp_path / "nope.json")})
    with pytest.raises(ConfigError, match="both set"):
        load_gates({"SWARM_GATES_FILE": str(path), "SWARM_GATES": "[]"})


def test_the_assessor_refuses_to_start_with_bad_gates() -> None:
    env = {
        **os.environ,
        "SWARM_GATES": '[{"rule": "min_overall", "on_fail": "FAIL"}]',
        "SWARM_ASSESSOR_ADDR": "127.0.0.1:0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "swarm_assessor"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert "swarm-assessor: SWARM_GATES: rule #1 (min_overall): min_overall needs ['min']" in done.stderr


@pytest_asyncio.fixture(loop_scope="session")
async def gated_stub() -> AsyncIterator[assessor_pb2_grpc.AssessorServiceStub]:
    config = AssessorConfig(address="127.0.0.1:0", gates=parse_gates(STRICT, "SWARM_GATES"), mutated_probes=0)
    server, port = await create_server(config)
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield assessor_pb2_grpc.AssessorServiceStub(channel)
    await server.stop(0)


async def test_evaluate_gates_over_a_real_channel(gated_stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    """A memory hog among the candidates, found by the real sandbox, holds the run for approval."""
    task = "Write f(n) that returns 1.\n>>> f(1)\n1\n"
    codes = {"c1": "def f(n):\n    return 1\n", "c2": "def f(n):\n    x = bytearray(8 * 1024**3)\n    return 1\n"}
    assessed = await gated_stub.Assess(
        assessor_pb2.AssessRequest(
            run_id="r", task=task, candidates=[common_pb2.CandidateCode(id=k, code=v) for k, v in codes.items()]
        )
    )
    subjects = {
        a.candidate_id: assessor_pb2.GateCandidate(
            candidate_id=a.candidate_id, scores=a.scores, tests=a.tests, error=a.error, limit=a.limit
        )
        for a in assessed.assessments
    }
    subjects["c1"].scores.overall = 0.9
    consensus = common_pb2.Consensus(reached=True, share=0.5, confidence=0.5)
    reply = await gated_stub.EvaluateGates(
        assessor_pb2.EvaluateGatesRequest(
            run_id="r", final=subjects["c1"], others=[subjects["c2"]], consensus=consensus
        )
    )
    decision = reply.decision
    assert decision.outcome == NEEDS_APPROVAL, decision.summary
    assert list(decision.deciding_rules) == ["no_sandbox_violation"]
    assert "c2: memory limit" in decision.summary
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await gated_stub.EvaluateGates(assessor_pb2.EvaluateGatesRequest(run_id="r"))
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "final is missing" in (
        missing.value.details() or ""
    )
