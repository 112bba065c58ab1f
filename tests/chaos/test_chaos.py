"""Chaos: a stream of runs through the four services as real processes, with instances that fail
at random in every way (``swarm_bench.faulty``), while the assessor, the collator and the refiner
are each SIGKILLed and restarted, and the orchestrator is SIGKILLed once and restarted on the
same database.

What must hold, whatever the faults: every accepted run ends in a terminal status in the store;
a FAILED run has its reasons stored (its error, each instance failure with its kind); every
answer that arrived is stored, failed runs included; no stream ends ``UNKNOWN`` or ``INTERNAL``;
a stage that comes back within the stage deadline fails no run; the runs the orchestrator was
driving when it died end FAILED "interrupted" with their answers (lease reclaim); and the
orchestrator serves afterwards. No wall-clock assertions: the bounds are the lease and the
stage deadline, which the services enforce themselves.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.faulty import Fault, FaultRates
from tests.chaos.harness import (
    FIB_TASK,
    LEASE_S,
    STAGE_TIMEOUT_S,
    Attempt,
    RunStream,
    Swarm,
    faulty_instances,
    send_run,
    settled_runs,
    swarm_processes,
)

TERMINAL = (pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_NEEDS_APPROVAL, pb.RUN_STATUS_FAILED)
QUORUM = "quorum not reached"
INTERRUPTED = "run interrupted"
# How long the assessor may stay paused for the orchestrator's kill: every run waiting on it must
# still be within its stage deadline when it comes back.
PAUSE_LIMIT_S = STAGE_TIMEOUT_S / 2
# What the faults become in the store (HTTP errors are retried once by the client first).
FAULT_KINDS = {
    pb.FAILURE_KIND_HTTP_ERROR,
    pb.FAILURE_KIND_TIMEOUT,
    pb.FAILURE_KIND_MALFORMED,
    pb.FAILURE_KIND_EMPTY,
    pb.FAILURE_KIND_CONNECT,
}


@dataclass(frozen=True)
class Scenario:
    """Runs sent, how many at once, and which service is killed after how many finished runs."""

    runs: int
    concurrency: int
    kills: tuple[tuple[int, str], ...]
    instances: int = 4
    fault_rate: float = 0.3  # a third of the requests fail: every kind occurs in a short stream
    seed: int = 12


DEFAULT = Scenario(
    runs=40, concurrency=4, kills=((4, "assessor"), (10, "collator"), (18, "refiner"), (26, "orchestrator"))
)
LONG = Scenario(
    runs=160,
    concurrency=6,
    kills=tuple(
        (after + offset, name)
        for offset in (0, 70)
        for after, name in ((8, "assessor"), (20, "collator"), (32, "refiner"), (44, "orchestrator"))
    ),
)


async def wait_for(condition: Callable[[], bool], limit_s: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not condition() and loop.time() < deadline:  # noqa: ASYNC110 (a state the stream's calls change)
        await asyncio.sleep(0.05)
    return condition()


async def chaos(swarm: Swarm, stream: RunStream, scenario: Scenario, killed: list[tuple[str, set[str]]]) -> None:
    """Kill each service of the schedule in turn (SIGKILL) and start it again on its port; note
    the runs in flight at each kill."""
    for after, name in scenario.kills:
        await stream.until(stream.reached(after))
        service = getattr(swarm, name)
        if name == "orchestrator":
            # Its kill must catch a run whose answer is stored and that is not finished yet: with
            # the assessor paused, a run that has answers waits for it, at its assessment or later
            # at a refinement's assessment or its gates (however slow the machine, the run cannot
            # end between the check and the kill). Any such run will do: were it only one waiting
            # for its first assessment, every run holding the queue's slots could be past it and
            # blocked, none would start, and the pause would outlast the stage deadline of a run
            # whose client hung up. The wait stays well within that deadline.
            with swarm.assessor.paused():
                ready = stream.in_flight_with_an_answer
                assert await wait_for(ready, PAUSE_LIMIT_S), "no run with answers in flight to kill under"
                in_flight = {a.run_id for a in stream.attempts if a.in_flight}
                service.kill()
        else:  # a stage's kill: a run about to call it
            assert await wait_for(stream.waiting_for(name), 60.0), (
                f"no run in flight reached the {name} to kill it under"
            )
            in_flight = {a.run_id for a in stream.attempts if a.in_flight}
            service.kill()
        killed.append((name, in_flight))
        await asyncio.sleep(0.5)
        await service.start()
    stream.schedule_done.set()


def check_stored(attempt: Attempt, run: pb.Run, interrupted: set[str]) -> None:
    """One run as stored, against what its stream said."""
    assert run.status in TERMINAL, f"run {run.id} is {pb.RunStatus.Name(run.status)}"
    stored_ids = {c.id for c in run.candidates}
    assert attempt.answered_ids <= stored_ids, f"run {run.id}: answers lost: {attempt.answered_ids - stored_ids}"
    assert all(c.code for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM), run.id
    for failure in run.failures:
        assert failure.kind != pb.FAILURE_KIND_UNSPECIFIED and failure.reason and failure.instance, failure
    done = attempt.done
    if attempt.hung_up:  # its client went away: the run went on without it
        assert run.status != pb.RUN_STATUS_FAILED or run.error.startswith((QUORUM, INTERRUPTED)), run.error
        return
    if done is not None:
        assert run.status == done.status and run.error == done.error
    if run.status == pb.RUN_STATUS_FAILED:
        assert run.error, f"run {run.id} FAILED without a reason"
        if run.error.startswith(QUORUM):
            assert len(run.failures) > 0 and len(run.candidates) < run.quorum
        else:
            # A stage killed and restarted within the deadline fails nothing; only the runs the
            # killed orchestrator was driving end otherwise.
            assert run.error.startswith(INTERRUPTED) and run.id in interrupted, f"run {run.id}: {run.error}"
    if attempt.code is None:
        assert done is not None and run.status != pb.RUN_STATUS_FAILED
    else:
        assert attempt.code is grpc.StatusCode.UNAVAILABLE, f"run {run.id}: {attempt.code}: {attempt.details}"
        if done is None:  # the stream broke: its orchestrator died under it (maybe as the run ended)
            assert run.id in interrupted, f"run {run.id}: the stream broke: {attempt.details}"


def logged_errors(tmp_path: Path) -> dict[str, list[str]]:
    """The ERROR lines of each service's log, by log file."""
    found = {}
    for log_path in sorted(tmp_path.glob("*.log")):
        errors = [line for line in log_path.read_text(errors="replace").splitlines() if " ERROR " in line]
        if errors:
            found[log_path.name] = errors[:5]
    return found


async def run_chaos(tmp_path: Path, database_url: str, scenario: Scenario) -> None:
    rates = FaultRates.uniform(scenario.fault_rate)
    async with (
        faulty_instances(scenario.instances, rates, scenario.seed) as instances,
        swarm_processes(tmp_path, instances, database_url) as swarm,
    ):
        stream = RunStream(swarm.orchestrator.target, swarm.api_key, scenario.runs, scenario.concurrency)
        killed: list[tuple[str, set[str]]] = []
        await asyncio.gather(stream.run(), chaos(swarm, stream, scenario, killed))
        assert [name for name, _ in killed] == [name for _, name in scenario.kills]
        for service in (swarm.orchestrator, *swarm.stages()):
            assert service.alive(), f"{service.service} died on its own:\n{service.log_path.read_text()[-3000:]}"

        # Every run had its chance: a lease and then some for the sweep of the restarted orchestrator.
        await asyncio.sleep(LEASE_S * 2)
        attempts = stream.attempts
        assert len(attempts) >= scenario.runs and all(a.accepted for a in attempts), [
            (a.code, a.details) for a in attempts if not a.accepted
        ]
        codes = Counter(a.code for a in attempts)
        assert not {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL} & set(codes), codes
        stored = await settled_runs(
            swarm.orchestrator.target, swarm.api_key, [a.run_id for a in attempts], LEASE_S * 10
        )
        interrupted = set().union(*(runs for name, runs in killed if name == "orchestrator"))
        for attempt in attempts:
            check_stored(attempt, stored[attempt.run_id], interrupted)

        # The orchestrator kills caught runs in flight with answers: they were closed as interrupted,
        # their answers kept (each run's announced answers are stored: checked above).
        closed = [stored[rid] for rid in interrupted if stored[rid].error.startswith(INTERRUPTED)]
        assert any(r.candidates for r in closed), [(r.id, r.error) for r in closed]

        # Every kind of fault occurred (the draws are seeded); the swarm met each of them.
        faults = Counter(record.fault for server in instances for record in server.log)
        assert set(faults) == set(Fault), f"fault kinds that never occurred: {set(Fault) - set(faults)}"
        failure_kinds = Counter(f.kind for r in stored.values() for f in r.failures)
        assert pb.FAILURE_KIND_MALFORMED in failure_kinds and set(failure_kinds) <= FAULT_KINDS, failure_kinds

        # Nothing any service logged was an error: faults, kills and hang-ups are all expected.
        assert not logged_errors(tmp_path), logged_errors(tmp_path)

        # And it still serves.
        after = Attempt(len(attempts))
        await send_run(swarm.orchestrator.target, swarm.api_key, after, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=3))
        assert after.done is not None and after.done.status in TERMINAL, (after.code, after.details)
        statuses = Counter(pb.RunStatus.Name(r.status) for r in stored.values())
        reasons = Counter(r.error.split(":")[0] for r in stored.values() if r.status == pb.RUN_STATUS_FAILED)
        print(f"\nchaos: {dict(statuses)}, failed: {dict(reasons)}; in flight at each kill: ")
        print("  " + ", ".join(f"{name} {len(runs)}" for name, runs in killed))
        print(f"  faults met { ({f.value: n for f, n in faults.items()}) }")
        print(f"  failure kinds stored { ({pb.FailureKind.Name(k): n for k, n in failure_kinds.items()}) }")


async def test_runs_survive_faulty_instances_and_killed_services(tmp_path: Path, database_url: str) -> None:
    await run_chaos(tmp_path, database_url, DEFAULT)


@pytest.mark.slow
@pytest.mark.timeout(1200)
async def test_a_long_stream_survives_faulty_instances_and_repeated_kills(tmp_path: Path, database_url: str) -> None:
    await run_chaos(tmp_path, database_url, LONG)
