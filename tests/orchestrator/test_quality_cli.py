"""``swarm approve | reject | approvals | feedback | reputation | report`` as a user runs them: subprocesses
talking to the real services, identity from ``--user`` or ``$SWARM_USER``."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import Stages, orchestrator
from tests.fakes.openai_server import Behaviour
from tests.fakes.replies import FIB_REPLY
from tests.orchestrator.test_quality import gated
from tests.orchestrator.test_swarm import FIB_TASK, fakes, named


async def swarm(target: str, *args: str, user: str | None = None) -> tuple[int, str, str]:
    """Run the CLI without blocking the event loop the servers live on."""
    env = {k: v for k, v in os.environ.items() if k != "SWARM_USER"}
    if user is not None:
        env["SWARM_USER"] = user
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swarm_cli.main",
        "--target",
        target,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_approval_feedback_and_reports_from_the_command_line(stages: Stages, sqlite_url: str) -> None:
    async with (
        gated(stages) as wired,
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(wired, named(servers), sqlite_url, SWARM_TEST_WRITERS="0", SWARM_APPROVERS="alice") as orch,
    ):
        target = orch.target
        code, out, err = await swarm(target, "run", FIB_TASK, "--size", "1", "--no-refine")
        assert code == 4, err  # held for approval
        assert "quality gates: needs approval: consensus_reached" in out
        assert "gates: needs approval" in err  # the progress line
        run_id = (await orch.stub.ListRuns(pb.ListRunsRequest())).runs[0].id
        assert f"waiting for approval: swarm approve {run_id}" in out

        code, out, _ = await swarm(target, "approvals")
        assert code == 0 and out.startswith(run_id) and "consensus_reached" in out

        code, _, err = await swarm(target, "approve", run_id)
        assert code == 2 and "--user NAME or $SWARM_USER" in err
        code, _, err = await swarm(target, "approve", run_id, "--user", "mallory")
        assert code == 1 and "PERMISSION_DENIED: mallory may not approve runs" in err
        code, out, err = await swarm(target, "approve", run_id, "--comment", "looks right", user="alice")
        assert code == 0, err
        assert out.strip() == f"run {run_id}: succeeded by alice"
        code, _, err = await swarm(target, "reject", run_id, "--user", "alice")
        assert code == 1 and "FAILED_PRECONDITION" in err and "not waiting for approval" in err

        code, out, err = await swarm(target, "feedback", run_id, "--rating", "4", "--prefer", "c1", "--user", "carol")
        assert code == 0, err
        assert f"feedback stored for run {run_id}: 4/5, preferred c1" in out
        assert "instance fake-1: vote multiplier" in out
        code, _, err = await swarm(target, "feedback", run_id, "--rating", "9", "--user", "carol")
        assert code == 2 and "rating must be 1..5" in err

        code, out, _ = await swarm(target, "runs", "show", run_id)
        assert code == 0
        assert "approved by alice: looks right" in out and "feedback from carol: 4/5, preferred c1" in out

        code, out, _ = await swarm(target, "report", run_id)
        assert code == 0 and out.startswith(f"# Run {run_id}") and "**approved** by alice: looks right" in out
        code, out, _ = await swarm(target, "report", run_id, "--format", "json")
        assert code == 0 and json.loads(out)["approvals"][1]["actor"] == "alice"
        code, out, _ = await swarm(target, "report", "--since", "2020-01-01", "--format", "json")
        metrics = json.loads(out)
        assert code == 0 and metrics["runs"] == 1 and metrics["approvals"]["approved"] == 1
        code, out, _ = await swarm(target, "report", "--since", "2020-01-01")
        assert code == 0 and out.startswith("# Swarm quality: 2020-01-01T00:00:00+00:00 to now")
        code, _, err = await swarm(target, "report", "--since", "last tuesday")
        assert code == 2 and "is not a date" in err

        code, out, _ = await swarm(target, "reputation")
        assert code == 0 and "fake-1" in out and "qwen" in out
        code, out, _ = await swarm(target, "reputation", "--json")
        assert code == 0 and {r["name"] for r in json.loads(out)["reputation"]} == {"fake-1", "qwen"}
