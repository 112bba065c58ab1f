"""The servers every fuzz module calls, started once: fake instances, the three stages, databases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from swarm_bench.runs import database
from swarm_bench.stack import Stages, stage_servers
from tests.fakes.openai_server import FakeLLMServer
from tests.fakes.replies import FIB_REPLY

REFINER_KEY_ENV = "FUZZ_REFINER_KEY"
# Runs the gates hold when the swarm does not agree (one instance, or two that differ), so the
# approval RPCs have runs to act on.
GATES = json.dumps([{"rule": "consensus_reached", "on_fail": "NEEDS_APPROVAL"}])


@dataclass(frozen=True)
class Stack:
    """Two fake instances and the stages; the refiner knows ``fake-1`` with a key."""

    llms: tuple[FakeLLMServer, FakeLLMServer]
    stages: Stages

    @property
    def llm_urls(self) -> list[str]:
        return [llm.base_url for llm in self.llms]


@pytest.fixture(scope="session")
async def fuzz_stack() -> AsyncIterator[Stack]:
    async with FakeLLMServer(reply=FIB_REPLY) as one, FakeLLMServer(reply=FIB_REPLY) as two:
        instances = [{"name": "fake-1", "base_url": one.base_url, "model": "qwen", "api_key_env": REFINER_KEY_ENV}]
        env = {
            "SWARM_GATES": GATES,
            "SWARM_INSTANCES": json.dumps(instances),
            REFINER_KEY_ENV: "fuzz-refiner-key",
            "SWARM_REFINER_LLM_TIMEOUT_S": "5",
            "SWARM_ASSESSOR_MAX_TIMEOUT_S": "5",
            # Candidates that loop forever are among the generated ones: keep each one's wall clock short.
            "SWARM_ASSESSOR_TIMEOUT_S": "2",
        }
        async with stage_servers(env) as stages:
            yield Stack((one, two), stages)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def fuzz_database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """A database for one module's orchestrator, on SQLite and on PostgreSQL (dropped afterwards)."""
    if request.param == "sqlite":
        path: Path = tmp_path_factory.mktemp("fuzz") / "swarm.db"
        yield f"sqlite+aiosqlite:///{path}"
        return
    async with database("postgres", tmp_path_factory.getbasetemp(), prefix="swarm_fuzz") as url:
        yield url
