"""Run leases in the store, on SQLite and PostgreSQL: an owner's renewals keep its runs, a run
whose lease ran out is ended FAILED "interrupted" from its rows with the answers that had
arrived, exactly one of several sweeping replicas ends it, and its late owner cannot overwrite it.
A database from before leases opens and its orphaned RUNNING rows are closed."""

from __future__ import annotations

import asyncio
import uuid

from swarm.v1 import assessor_pb2, common_pb2, orchestrator_pb2 as pb
from swarm_orchestrator.lease import Leases
from swarm_orchestrator.store import RunStore
from swarm_orchestrator.store_leases import LeaseTerms
from tests.orchestrator.offline import Scripted, Verdict, fenced, offline
from tests.orchestrator.older_schema import as_before

TASK = "Write f(n) that returns n + 1."


def new_run(size: int = 3) -> pb.Run:
    run = pb.Run(id=uuid.uuid4().hex[:16], task=TASK, status=pb.RUN_STATUS_RUNNING, swarm_size=size, quorum=2)
    run.created_at.GetCurrentTime()
    return run


def answer(slot: int) -> pb.Candidate:
    return pb.Candidate(
        id=f"c{slot}",
        origin=pb.CANDIDATE_ORIGIN_SWARM,
        instance=f"fake-{slot}",
        code=f"def f(n):\n    return n + {slot}\n",
        usage=common_pb2.Usage(prompt_tokens=20, completion_tokens=10),
        cluster_id=-1,
    )


async def test_an_expired_lease_ends_the_run_interrupted_with_what_had_arrived(database_url: str) -> None:
    # The lease must outlive the writes below on a loaded machine, and then run out.
    gone = await RunStore.open(database_url, lease=LeaseTerms("gone:1:aaaa", ttl_s=1.5))
    alive = await RunStore.open(database_url, lease=LeaseTerms("alive:2:bbbb", ttl_s=30))
    try:
        run = new_run()
        await gone.create_run(run)
        for slot in (10, 2):  # arrival order is not slot order
            await gone.add_candidate(run.id, answer(slot))
        failure = pb.InstanceFailure(slot=0, instance="fake-1", kind=pb.FAILURE_KIND_TIMEOUT, reason="too slow")
        await gone.add_failure(run.id, failure)
        assert await alive.reclaim_expired() == [], "a lease that has not run out is left alone"
        await asyncio.sleep(1.6)
        assert await alive.reclaim_expired() == [run.id]
        assert await alive.reclaim_expired() == []

        stored = await alive.get_run(run.id)
        assert stored.status == pb.RUN_STATUS_FAILED and stored.HasField("finished_at")
        assert stored.error.startswith("run interrupted: the orchestrator driving it (gone:1:aaaa) stopped renewing")
        assert "the 2 answer(s) and the failures that had arrived are kept" in stored.error
        assert [c.id for c in stored.candidates] == ["c2", "c10"] and list(stored.failures) == [failure]
        assert stored.usage.completion_tokens == 20
        summary = (await alive.list_runs(5, ""))[0][0]
        assert summary.status == pb.RUN_STATUS_FAILED

        # The owner comes back too late: its end is not written over the interrupted run.
        run.status = pb.RUN_STATUS_SUCCEEDED
        run.finished_at.GetCurrentTime()
        assert not await gone.finish_run(run)
        assert (await alive.get_run(run.id)).status == pb.RUN_STATUS_FAILED
    finally:
        await gone.close()
        await alive.close()


async def test_renewals_keep_only_the_owners_listed_runs(database_url: str) -> None:
    owner = await RunStore.open(database_url, lease=LeaseTerms("owner:1:aaaa", ttl_s=0.5))
    other = await RunStore.open(database_url, lease=LeaseTerms("other:2:bbbb", ttl_s=0.5))
    try:
        kept, dropped, foreign = new_run(), new_run(), new_run()
        await owner.create_run(kept)
        await owner.create_run(dropped)  # e.g. its end could not be stored: no longer driven
        await other.create_run(foreign)
        for _ in range(4):
            await asyncio.sleep(0.2)
            assert await owner.renew_leases([kept.id, foreign.id]) == 1
        assert sorted(await other.reclaim_expired()) == sorted([dropped.id, foreign.id])
        assert (await owner.get_run(kept.id)).status == pb.RUN_STATUS_RUNNING
        kept.status = pb.RUN_STATUS_SUCCEEDED
        assert await owner.finish_run(kept)
        assert (await owner.get_run(kept.id)).status == pb.RUN_STATUS_SUCCEEDED
    finally:
        await owner.close()
        await other.close()


async def test_a_replica_spares_the_runs_it_drives_when_their_lease_ran_out(database_url: str) -> None:
    # A stall or a failed renewal let the leases run out while this process still drives one run:
    # its own sweep leaves that run (it will store the end), not the one it no longer drives;
    # another replica, which cannot tell a stall from a death, closes it.
    stalled = await RunStore.open(database_url, lease=LeaseTerms("stalled:1:aaaa", ttl_s=0.1))
    other = await RunStore.open(database_url)
    try:
        driven, abandoned = new_run(), new_run()
        await stalled.create_run(driven)
        await stalled.create_run(abandoned)
        await asyncio.sleep(0.2)
        assert await Leases(stalled, lambda: {driven.id}).sweep() == [abandoned.id]
        assert (await stalled.get_run(driven.id)).status == pb.RUN_STATUS_RUNNING
        assert await other.reclaim_expired() == [driven.id]
    finally:
        await stalled.close()
        await other.close()


async def test_of_replicas_sweeping_at_once_exactly_one_ends_each_run(database_url: str) -> None:
    gone = await RunStore.open(database_url, lease=LeaseTerms("gone:1:aaaa", ttl_s=0.1))
    replicas = [await RunStore.open(database_url) for _ in range(3)]
    try:
        runs = [new_run() for _ in range(12)]
        for run in runs:
            await gone.create_run(run)
        await asyncio.sleep(0.2)
        swept = await asyncio.gather(*(replica.reclaim_expired() for replica in replicas))
        everyone = [run_id for ids in swept for run_id in ids]
        assert sorted(everyone) == sorted(run.id for run in runs), swept
    finally:
        for store in (gone, *replicas):
            await store.close()


async def test_the_heartbeat_keeps_a_run_in_flight_past_its_lease(sqlite_url: str) -> None:
    scripted = Scripted({"def f(n):\n    return n + 1\n": Verdict(2, behaviour="R")})
    proceed = asyncio.Event()
    original = scripted.assess

    async def slow_assess(request: assessor_pb2.AssessRequest, timeout: float) -> assessor_pb2.AssessResponse:
        await proceed.wait()
        return await original(request, timeout)

    scripted.assess = slow_assess  # type: ignore[method-assign]
    replies = {"a": fenced("def f(n):\n    return n + 1\n")}
    async with offline(sqlite_url, replies, scripted, SWARM_RUN_LEASE_S="0.5") as swarm:
        leases = Leases(swarm.store, lambda: swarm.pipeline.driving)
        leases.start()
        sweeper = await RunStore.open(sqlite_url)
        try:
            running = asyncio.create_task(swarm.run(refine=False))
            for _ in range(8):  # 1.6 s: three times the lease
                await asyncio.sleep(0.2)
                assert await sweeper.reclaim_expired() == []
            assert len(swarm.pipeline.driving) == 1
            proceed.set()
            run, error = await running
            assert error is None and run.status == pb.RUN_STATUS_SUCCEEDED
            assert not swarm.pipeline.driving
        finally:
            await leases.aclose()
            await sweeper.close()


async def test_a_database_from_before_leases_opens_and_its_orphans_are_closed(database_url: str) -> None:
    store = await RunStore.open(database_url)
    orphan = new_run()
    await store.create_run(orphan)
    await store.add_candidate(orphan.id, answer(1))
    await store.close()
    await as_before(  # the runs table as it was before leases
        database_url,
        "DROP INDEX ix_runs_lease",
        "ALTER TABLE runs DROP COLUMN owner",
        "ALTER TABLE runs DROP COLUMN lease_expires",
    )

    store = await RunStore.open(database_url)
    try:
        assert await store.reclaim_expired() == [orphan.id]
        stored = await store.get_run(orphan.id)
        assert stored.status == pb.RUN_STATUS_FAILED and [c.id for c in stored.candidates] == ["c1"]
        assert stored.error.startswith("run interrupted: it was started by an orchestrator without run leases")
        fresh = new_run()
        await store.create_run(fresh)
        assert await store.reclaim_expired() == []
    finally:
        await store.close()
