"""One short generation by the real local Qwen model through the whole stack."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import instances_json, orchestrator, stage_servers
from swarm_cli.models import QWEN_05B, prepare_model

ROOT = Path(__file__).resolve().parent.parent
TASK = "Write a Python function add(a, b) that returns the sum of a and b.\n\n>>> add(2, 3)\n5\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def qwen_server(parallel: int = 1) -> AsyncIterator[str]:
    """xllamacpp serving the verified GGUF (joined once into .swarm/models, as `make model` does),
    decoding ``parallel`` requests in one batch."""
    model = prepare_model(QWEN_05B, ROOT / ".swarm" / "models")
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "swarm_cli.qwen_server", "--model", str(model), "--alias", QWEN_05B.name,
        "--port", str(port), "--threads", "2", "--parallel", str(parallel), "--ctx-per-slot", "2048",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            for _ in range(120):
                if process.returncode is not None:
                    raise RuntimeError(f"qwen server exited with {process.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{base_url}/models")).status_code == 200:
                        break
                await asyncio.sleep(0.25)
        yield base_url
    finally:
        process.terminate()
        await process.wait()


@pytest.mark.qwen
async def test_real_qwen_answers_through_the_whole_stack(tmp_path: Path) -> None:
    async with (
        qwen_server() as base_url,
        stage_servers() as stages,
        orchestrator(
            stages,
            instances_json([("qwen-1", base_url)], model=QWEN_05B.name),
            f"sqlite+aiosqlite:///{tmp_path / 'swarm.db'}",
            SWARM_INSTANCE_TIMEOUT_S="120",
            SWARM_MAX_TOKENS="160",
        ) as orch,
    ):
        events = [e async for e in orch.stub.RunSwarm(pb.RunSwarmRequest(task=TASK, swarm_size=1, skip_refine=True))]
    run = events[-1].done
    assert run.status == pb.RUN_STATUS_SUCCEEDED, run.error
    candidate = run.candidates[0]
    assert candidate.usage.completion_tokens > 0 and candidate.text.strip()
    assert "def add" in run.final.code
    assert run.tests_found == 1 and candidate.scores.tests_total == 1
