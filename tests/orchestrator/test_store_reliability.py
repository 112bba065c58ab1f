"""The run store under load and faults, over real channels on SQLite: a burst of runs at once never
ends UNKNOWN nor leaves a run RUNNING; a write that cannot be made (another process holds the
database's write lock) is the clear UNAVAILABLE "the run store is unavailable: ..." without SQL,
parameters or task text; and a run whose end could not be stored is closed by the sweep with the
answers that had arrived. The store's own errors on PostgreSQL, too."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from pathlib import Path

import grpc
import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import Stages, instances_json, orchestrator
from swarm_orchestrator.store import RunStore
from swarmlib import StoreUnavailableError, status_for
from tests.fakes.openai_server import Behaviour, FakeLLMServer
from tests.orchestrator.test_swarm import FIB_TASK, collect

BURST = 100
LOCKED = "the run store is unavailable: database is locked (another writer held it past the busy timeout)"


def held_write_lock(database: Path) -> sqlite3.Connection:
    """Another process's view: a connection that holds the database's write lock until rolled back."""
    other = sqlite3.connect(database, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    return other


def assert_no_internals(message: str) -> None:
    for word in ("INSERT", "UPDATE", "SELECT", "parameters", "sqlite3", "sqlalchemy", "fib(n)", "Fibonacci"):
        assert word not in message, f"{word!r} leaked into {message!r}"


async def test_a_burst_of_runs_on_sqlite_all_end_and_none_as_unknown(stages: Stages, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'burst.db'}"
    async with (
        FakeLLMServer() as first,
        FakeLLMServer() as second,
        orchestrator(stages, instances_json([("fake-1", first.base_url), ("fake-2", second.base_url)]), url) as orch,
    ):
        request = pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, skip_refine=True)
        results = await asyncio.gather(*(collect(orch.stub, request) for _ in range(BURST)))
        codes = Counter(error.code().name if error is not None else "OK" for _, error in results)
        assert codes == {"OK": BURST}, [error.details() for _, error in results if error is not None][:3]
        assert all(events[-1].done.status == pb.RUN_STATUS_SUCCEEDED for events, _ in results)
        statuses: Counter[str] = Counter()
        token = ""
        while True:
            page = await orch.stub.ListRuns(pb.ListRunsRequest(page_size=100, page_token=token))
            statuses.update(pb.RunStatus.Name(r.status) for r in page.runs)
            if not (token := page.next_page_token):
                break
    assert statuses == {"RUN_STATUS_SUCCEEDED": BURST}


async def test_a_write_that_cannot_be_made_is_a_clear_unavailable(stages: Stages, tmp_path: Path) -> None:
    database = tmp_path / "locked.db"
    url = f"sqlite+aiosqlite:///{database}"
    async with (
        FakeLLMServer() as llm,
        orchestrator(stages, instances_json([("fake-1", llm.base_url)]), url, SWARM_STORE_BUSY_TIMEOUT_S="0.1") as orch,
    ):
        other = held_write_lock(database)
        try:
            events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1))
        finally:
            other.rollback()
            other.close()
        assert events == [] and error is not None
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert error.details() == f"{LOCKED} (tried 3 times)"
        assert_no_internals(error.details())
        assert not llm.chat_requests, "nothing started for a run that could not be stored"
        listing = await orch.stub.ListRuns(pb.ListRunsRequest())
        assert list(listing.runs) == []


async def test_a_run_whose_end_could_not_be_stored_is_closed_with_its_answers(stages: Stages, tmp_path: Path) -> None:
    database = tmp_path / "mid-run.db"
    url = f"sqlite+aiosqlite:///{database}"
    async with (
        FakeLLMServer() as fast,
        FakeLLMServer(behaviour=Behaviour.SLOW, chunk_delay=0.05) as slow,
        orchestrator(
            stages,
            instances_json([("fast", fast.base_url), ("slow", slow.base_url)]),
            url,
            SWARM_STORE_BUSY_TIMEOUT_S="0.1",
            SWARM_RUN_LEASE_S="1",
            SWARM_TEST_WRITERS="0",
        ) as orch,
    ):
        call = orch.stub.RunSwarm(pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, skip_refine=True))
        run_id = (await call.read()).run_id
        while True:  # the fast answer arrives (and is stored) while the slow one still streams
            event = await call.read()
            if event.HasField("instance_finished"):
                break
        await asyncio.sleep(0.2)
        other = held_write_lock(database)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                while await call.read() is not grpc.aio.EOF:
                    pass
        finally:
            other.rollback()
            other.close()
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        assert ended.value.details() == f"{LOCKED} (tried 3 times)"
        closed_after = time.monotonic()
        while (run := (await orch.stub.GetRun(pb.GetRunRequest(run_id=run_id))).run).status == pb.RUN_STATUS_RUNNING:
            assert time.monotonic() - closed_after < 5.0, "the sweep never closed the run"
            await asyncio.sleep(0.1)
    assert run.status == pb.RUN_STATUS_FAILED and run.error.startswith("run interrupted: the orchestrator driving it")
    assert [c.instance for c in run.candidates] == ["fast"], "the answer stored as it arrived is kept"


async def test_an_unreachable_database_is_a_store_error_in_words() -> None:
    with pytest.raises(StoreUnavailableError) as raised:
        await RunStore.open("postgresql+asyncpg://postgres@127.0.0.1:9/swarm")
    reason = "cannot reach the database (Connection refused) (tried 3 times)"
    assert str(raised.value) == f"the run store is unavailable: {reason}"
    assert status_for(raised.value) == grpc.StatusCode.UNAVAILABLE
