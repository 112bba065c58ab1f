"""``swarm approve | reject | approvals | feedback | reputation | report`` as a user runs them: subprocesses
talking to the real services, identity from the API key (``--api-key`` or ``$SWARM_API_KEY``)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import Stages, orchestrator
from tests.fakes.openai_server import Behaviour
from tests.fakes.replies import FIB_REPLY
from tests.orchestrator.keys import new_key
from tests.orchestrator.test_quality import gated
from tests.orchestrator.test_swarm import FIB_TASK, fakes, named


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's $SWARM_HOME is the test's: no cli-key of another stack is picked up."""
    monkeypatch.setenv("SWARM_HOME", str(tmp_path / "home"))


async def swarm(target: str, *args: str, key: str | None = None) -> tuple[int, str, str]:
    """Run the CLI without blocking the event loop the servers live on; ``key`` as $SWARM_API_KEY."""
    env = {k: v for k, v in os.environ.items() if k not in ("SWARM_USER", "SWARM_API_KEY")}
    if key is not None:
        env["SWARM_API_KEY"] = key
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
        orchestrator(wired, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        target, local = orch.target, orch.api_key
        alice, mallory, carol = (new_key(orch, "alice", "approver"), new_key(orch, "mallory"), new_key(orch, "carol"))
        code, out, err = await swarm(target, "run", FIB_TASK, "--size", "1", "--no-refine", key=local)
        assert code == 4, err  # held for approval
        assert "quality gates: needs approval: consensus_reached" in out
        assert "gates: needs approval" in err  # the progress line
        run_id = (await orch.stub.ListRuns(pb.ListRunsRequest())).runs[0].id
        assert f"waiting for approval: swarm approve {run_id}" in out

        code, out, _ = await swarm(target, "approvals", key=local)
        assert code == 0 and out.startswith(run_id) and "consensus_reached" in out

        code, _, err = await swarm(target, "approve", run_id)
        assert code == 1 and err.strip().startswith("swarm: no API key: pass --api-key KEY or set $SWARM_API_KEY")
        assert len(err.strip().splitlines()) == 1
        code, _, err = await swarm(target, "--api-key", alice[:-4] + "AAAA", "approve", run_id)
        assert code == 1 and "the orchestrator refused the API key from --api-key" in err
        assert alice[:-4] not in err  # never echoed
        code, _, err = await swarm(target, "approve", run_id, key=mallory)
        assert code == 1 and "PERMISSION_DENIED: mallory may not approve runs" in err
        code, _, err = await swarm(target, "approve", run_id, "--user", "bob", key=alice)
        assert code == 1 and "PERMISSION_DENIED: only service keys may act for another user" in err
        code, out, err = await swarm(target, "approve", run_id, "--comment", "looks right", key=alice)
        assert code == 0, err
        assert out.strip() == f"run {run_id}: succeeded by alice"
        code, _, err = await swarm(target, "--api-key", alice, "reject", run_id)
        assert code == 1 and "FAILED_PRECONDITION" in err and "not waiting for approval" in err

        code, out, err = await swarm(target, "feedback", run_id, "--rating", "4", "--prefer", "c1", key=carol)
        assert code == 0, err
        assert f"feedback stored for run {run_id}: 4/5, preferred c1" in out
        assert "instance fake-1: vote multiplier" in out
        code, _, err = await swarm(target, "feedback", run_id, "--rating", "9", key=carol)
        assert code == 2 and "rating must be 1..5" in err

        code, out, _ = await swarm(target, "runs", "show", run_id, key=local)
        assert code == 0
        assert "approved by alice: looks right" in out and "feedback from carol: 4/5, preferred c1" in out

        code, out, _ = await swarm(target, "report", run_id, key=local)
        assert code == 0 and out.startswith(f"# Run {run_id}") and "**approved** by alice: looks right" in out
        code, out, _ = await swarm(target, "report", run_id, "--format", "json", key=local)
        assert code == 0 and json.loads(out)["approvals"][1]["actor"] == "alice"
        code, out, _ = await swarm(target, "report", "--since", "2020-01-01", "--format", "json", key=local)
        metrics = json.loads(out)
        assert code == 0 and metrics["runs"] == 1 and metrics["approvals"]["approved"] == 1
        code, out, _ = await swarm(target, "report", "--since", "2020-01-01", key=local)
        assert code == 0 and out.startswith("# Swarm quality: 2020-01-01T00:00:00+00:00 to now")
        code, _, err = await swarm(target, "report", "--since", "last tuesday", key=local)
        assert code == 2 and "is not a date" in err

        code, out, _ = await swarm(target, "reputation", key=local)
        assert code == 0 and "fake-1" in out and "qwen" in out
        code, out, _ = await swarm(target, "reputation", "--json", key=local)
        assert code == 0 and {r["name"] for r in json.loads(out)["reputation"]} == {"fake-1", "qwen"}


async def test_keys_add_list_revoke_edit_the_file_a_running_orchestrator_reads(
    stages: Stages, sqlite_url: str, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(
            stages, named(servers), sqlite_url, SWARM_TEST_WRITERS="0", SWARM_API_KEYS_FILE=str(keys_file)
        ) as orch,
    ):
        code, out, err = await swarm(
            orch.target, "keys", "add", "--tenant", "acme", "--principal", "dana", "--file", str(keys_file)
        )
        assert code == 0, err
        key = out.strip()
        assert key.startswith("swk_") and "only time the key is shown" in err
        assert key not in keys_file.read_text()  # only its SHA-256
        assert keys_file.stat().st_mode & 0o777 == 0o600
        code, _, err = await swarm(orch.target, "run", FIB_TASK, "--size", "1", "--no-refine", key=orch.api_key)
        assert code == 0, err
        code, out, _ = await swarm(orch.target, "runs", "list", key=orch.api_key)
        assert len(out.strip().splitlines()) == 1  # tenant local's run
        # Added while the orchestrator runs: accepted without a restart, within its own tenant.
        code, out, err = await swarm(orch.target, "runs", "list", key=key)
        assert code == 0, err
        assert out.strip() == ""
        code, out, _ = await swarm(orch.target, "keys", "list", "--file", str(keys_file))
        ident = key.split("_")[1]
        assert code == 0 and ident in out and "acme" in out and "dana" in out and "member" in out
        assert key.split("_", 2)[2] not in out and json.loads(keys_file.read_text())["keys"][-1]["sha256"] not in out
        code, out, _ = await swarm(orch.target, "keys", "revoke", ident, "--file", str(keys_file))
        assert code == 0 and "revoked" in out
        code, _, err = await swarm(orch.target, "runs", "list", key=key)
        assert code == 1 and "refused the API key from $SWARM_API_KEY" in err
        code, _, err = await swarm(orch.target, "keys", "revoke", "nosuchkey123", "--file", str(keys_file))
        assert code == 2 and "swarm keys list" in err
