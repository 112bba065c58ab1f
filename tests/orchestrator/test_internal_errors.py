"""A bug must not reach the caller or the stored run: a broken store's SQL, its parameters and the
task stay in the server's log, under the error id the caller gets with ``INTERNAL``."""

from __future__ import annotations

import logging
import re
import sqlite3
from pathlib import Path

import grpc
import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import Stages, instances_json, orchestrator
from tests.fakes.openai_server import FakeLLMServer
from tests.orchestrator.offline import Scripted, Verdict, fenced, offline

SECRET_TASK = "Write fib(n). The deploy password is CANARY-TASK-7c1d; never repeat it."
ERROR_ID = re.compile(r"internal error ([0-9a-f]{16}):")


async def test_a_store_failure_reaches_the_caller_as_internal_with_an_error_id_and_no_sql(
    stages: Stages, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = tmp_path / "swarm.db"
    async with (
        FakeLLMServer() as llm,
        orchestrator(stages, instances_json([("fake-1", llm.base_url)]), f"sqlite+aiosqlite:///{database}") as orch,
    ):
        with sqlite3.connect(database) as db:  # the store's tables vanish under the running service
            db.execute("DROP TABLE runs")
        for call in (
            lambda: _drain(orch.stub.RunSwarm(pb.RunSwarmRequest(task=SECRET_TASK, swarm_size=1), timeout=30)),
            lambda: orch.stub.GetRun(pb.GetRunRequest(run_id="CANARY-RUN-ID"), timeout=30),
        ):
            caplog.clear()
            with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as raised:
                await call()
            details = raised.value.details() or ""
            assert raised.value.code() == grpc.StatusCode.INTERNAL, details
            for leak in ("CANARY", "SELECT", "INSERT", "runs", "sqlalchemy", "OperationalError"):
                assert leak not in details, details
            match = ERROR_ID.match(details)
            assert match, details
            logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
            assert len(logged) == 1 and logged[0].exc_info is not None
            assert "no such table" in caplog.text


async def _drain(stream: object) -> None:
    async for _ in stream:  # type: ignore[attr-defined]
        pass


async def test_a_run_interrupted_by_a_bug_stores_its_error_id_not_its_text(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    code = "def f(n):\n    return n + 1\n"
    scripted = Scripted({code: Verdict(2)})
    scripted.fail["collate"] = RuntimeError(f"cannot collate {SECRET_TASK}")
    async with offline(sqlite_url, {"a": fenced(code), "b": fenced(code)}, scripted) as swarm:
        with caplog.at_level(logging.ERROR), pytest.raises(RuntimeError):
            await swarm.run(task=SECRET_TASK)
        (summary,), _ = await swarm.store.list_runs(10, "")
        stored = await swarm.store.get_run(summary.id)
    assert stored.status == pb.RUN_STATUS_FAILED and len(stored.candidates) == 2
    assert "CANARY" not in stored.error and stored.error.startswith("run interrupted: internal error "), stored.error
    match = re.search(r"internal error ([0-9a-f]{16}):", stored.error)
    assert match, stored.error
    logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert len(logged) == 1 and logged[0].exc_info is not None and "CANARY" in caplog.text
