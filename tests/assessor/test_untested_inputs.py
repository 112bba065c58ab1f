"""Behaviour signatures when no test gives an input: typed inputs, the programs' own calls, invalid
inputs dropped, stubs not running cleanly, over the real server and channel (docs/selection.md,
"Evidence without tests")."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from swarm.v1 import assessor_pb2, assessor_pb2_grpc, common_pb2
from swarm_assessor import runner
from swarm_assessor.harness import Plan, build_execution, build_spec, parse_report

TASK = 'from typing import List\n\n\ndef second(xs: List[int]) -> int:\n    """Return the second element."""\n'

INDEXED = "def second(xs):\n    return xs[1]\n"
UNPACKED = "def second(xs):\n    _, b, *rest = xs\n    return b\n"  # raises on short lists, like INDEXED
GUARDED = "def second(xs):\n    return xs[1] if len(xs) > 1 else None\n"  # differs only where most raise
WRONG = "def second(xs):\n    return xs[0]\n"
STUB = 'def second(xs: List[int]) -> int:\n    """Return the second element."""\n    pass\n'


async def _assess(stub: assessor_pb2_grpc.AssessorServiceStub, task: str, *codes: str) -> assessor_pb2.AssessResponse:
    request = assessor_pb2.AssessRequest(
        run_id="r-untested",
        task=task,
        candidates=[common_pb2.CandidateCode(id=f"c{i + 1}", text=code, code=code) for i, code in enumerate(codes)],
    )
    response: assessor_pb2.AssessResponse = await stub.Assess(request)
    return response


async def test_programs_agree_or_part_on_typed_inputs(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    response = await _assess(stub, TASK, INDEXED, UNPACKED, GUARDED, WRONG)
    assert response.tests_found == 0 and response.probes > 0
    indexed, unpacked, guarded, wrong = response.assessments
    assert indexed.behaviour == unpacked.behaviour
    # On [] and [x] most programs raise: those inputs are invalid for the task and do not count,
    # so the guarded program agrees with the others on every input they accept.
    assert guarded.behaviour == indexed.behaviour
    assert wrong.behaviour and wrong.behaviour != indexed.behaviour


async def test_a_model_own_call_is_an_input(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    task = 'def shout(word):\n    """Make it loud."""\n'  # no hint: only the program's own call is an input
    upper = "def shout(word):\n    return word.upper()\n\nprint(shout('hey'))\n"
    same = "def shout(word):\n    return ''.join(c.upper() for c in word)\n"
    other = "def shout(word):\n    return word + '!'\n"
    response = await _assess(stub, task, upper, same, other)
    assert response.probes >= 1
    a, b, c = response.assessments
    assert a.behaviour == b.behaviour != c.behaviour


async def test_a_stub_does_not_run_cleanly(stub: assessor_pb2_grpc.AssessorServiceStub) -> None:
    response = await _assess(stub, TASK, INDEXED, STUB)
    written, stubbed = response.assessments
    assert written.scores.correctness == 1.0
    assert stubbed.scores.correctness == 0.0 and stubbed.error == ""


def test_after_an_untested_input_times_out_the_rest_are_not_run(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        def f(n):
            while n != 0:
                n -= 1
            return 0
        """
    )
    plan = Plan(
        tests=[],
        probes=["f(3)", "f(-1)", "f(5)", "f(-2)"],
        entry_points=["f"],
        alias="f",
        budget_s=1.0,
        generated_budget_s=0.2,
        probe_budget_s=0.2,
        deadline_s=4.0,
        untested_from=0,
    )
    execution = build_execution(code, build_spec(plan))
    (tmp_path / "main.py").write_text(execution.program, encoding="utf-8")
    for name, text in execution.files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-I", "-S", str(tmp_path / "main.py")], capture_output=True, text=True, timeout=30, check=False
    )
    report = parse_report(done.stdout, execution.marker)
    assert report.observations == (
        "0",
        runner.TIMEOUT_OBSERVATION,
        runner.TIMEOUT_OBSERVATION,
        runner.TIMEOUT_OBSERVATION,
    )
    expected = runner.Observations(0)
    expected.values = list(report.observations)
    assert report.behaviour == expected.digest()
