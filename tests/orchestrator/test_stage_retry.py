"""The stage retry policy (``stages.StageRetry``) on plain functions and a hand-moved clock, and
what it makes of whole runs (``tests/orchestrator/offline.py``): a stage briefly gone or full is
waited for within the call's deadline; only then does the run degrade or fail, saying why."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
import pytest

from swarm.v1 import assessor_pb2, orchestrator_pb2 as pb
from swarm_orchestrator.stages import StageRetry
from swarmlib import StageError
from tests.orchestrator.offline import Scripted, Verdict, fenced, offline, rpc_error

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED
RIGHT = "def f(n):\n    return n + 1\n"
REPLIES = {"a": fenced(RIGHT), "b": fenced(RIGHT)}
VERDICTS = {RIGHT: Verdict(2, behaviour="R")}


@dataclass
class Clock:
    """Monotonic time that moves only when the policy sleeps; records every pause."""

    now: float = 100.0
    pauses: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        self.now += seconds


def policy(clock: Clock, jitter: float = 1.0, base: float = 0.25, cap: float = 5.0) -> StageRetry:
    return StageRetry(base, cap, clock=clock, sleep=clock.sleep, jitter=lambda: jitter)


@dataclass
class Flaky:
    """A stage call that raises ``errors`` in turn (taking ``takes`` seconds each), then answers."""

    clock: Clock
    errors: list[grpc.aio.AioRpcError]
    takes: float = 0.0
    timeouts: list[float] = field(default_factory=list)

    async def __call__(self, request: assessor_pb2.AssessRequest, timeout: float) -> assessor_pb2.AssessResponse:
        self.timeouts.append(timeout)
        self.clock.now += self.takes
        if self.errors:
            raise self.errors.pop(0)
        return assessor_pb2.AssessResponse(sandbox="answered")


def test_pauses_grow_exponentially_to_the_cap_with_jitter_between_half_and_all() -> None:
    clock = Clock()
    assert [policy(clock, jitter=1.0).pause(n) for n in range(1, 8)] == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert [policy(clock, jitter=0.0).pause(n) for n in range(1, 4)] == [0.125, 0.25, 0.5]
    assert policy(clock).pause(10_000) == 5.0


async def test_a_stage_gone_or_full_is_called_again_with_the_time_left() -> None:
    clock = Clock()
    call = Flaky(clock, [rpc_error(UNAVAILABLE, "connection refused"), rpc_error(EXHAUSTED, "queue full")], takes=1.0)
    response = await policy(clock).call(call, assessor_pb2.AssessRequest(), 30.0, "Assess")
    assert response.sandbox == "answered"
    assert clock.pauses == [0.25, 0.5]
    assert call.timeouts == [30.0, pytest.approx(28.75), pytest.approx(27.25)]


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.DEADLINE_EXCEEDED]
)
async def test_other_failures_are_not_repeated(code: grpc.StatusCode) -> None:
    clock = Clock()
    call = Flaky(clock, [rpc_error(code, "no")])
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy(clock).call(call, assessor_pb2.AssessRequest(), 30.0, "Assess")
    assert raised.value.code() == code and raised.value.details() == "no"
    assert len(call.timeouts) == 1 and clock.pauses == []


async def test_it_gives_up_when_the_next_pause_would_reach_the_deadline_and_says_so() -> None:
    clock = Clock()
    call = Flaky(clock, [rpc_error(UNAVAILABLE, "assessor down")] * 50, takes=1.0)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy(clock).call(call, assessor_pb2.AssessRequest(), 10.0, "Assess")
    assert raised.value.code() == UNAVAILABLE
    # calls at 0, 1.25, 2.75, 4.75, 7.75; the fifth ends at 8.75, and a 4 s pause would pass 10.
    assert clock.pauses == [0.25, 0.5, 1.0, 2.0]
    assert raised.value.details() == "assessor down (after 5 calls; no time left of the 10 s deadline)"


async def test_a_deadline_after_refusals_names_the_first_refusal() -> None:
    clock = Clock()
    errors = [rpc_error(UNAVAILABLE, "Cancelling all calls"), rpc_error(grpc.StatusCode.DEADLINE_EXCEEDED, "late")]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await policy(clock).call(Flaky(clock, errors), assessor_pb2.AssessRequest(), 10.0, "Assess")
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert raised.value.details() == "late (after 2 calls, the first refused with UNAVAILABLE: Cancelling all calls)"


def down_then_up(scripted: Scripted, stage: str, failures: int, code: grpc.StatusCode) -> None:
    """Make ``stage`` of ``scripted`` refuse its first ``failures`` calls, then answer as before."""
    original = getattr(scripted, stage)
    left = [failures]

    async def call(request: object, timeout: float) -> object:
        if left[0] > 0:
            left[0] -= 1
            scripted.calls.append(f"{stage} refused")
            raise rpc_error(code, f"{stage} {code.name.lower()}")
        return await original(request, timeout)

    setattr(scripted, stage, call)


async def test_a_run_waits_for_an_assessor_briefly_gone_or_full(sqlite_url: str) -> None:
    scripted = Scripted(dict(VERDICTS))
    down_then_up(scripted, "assess", 1, UNAVAILABLE)
    down_then_up(scripted, "collate", 2, EXHAUSTED)
    async with offline(sqlite_url, REPLIES, scripted, StageRetry(0.01, 0.05)) as swarm:
        run, error = await swarm.run(refine=False)
    assert error is None and run.status == pb.RUN_STATUS_SUCCEEDED
    assert scripted.calls[:5] == ["assess refused", "assess", "collate refused", "collate refused", "collate"]
    assert run.consensus.reached and run.analysis == "scripted analysis"


async def test_only_a_stage_gone_past_the_deadline_fails_or_degrades_the_run(sqlite_url: str) -> None:
    retry = StageRetry(0.01, 0.05)
    scripted = Scripted(dict(VERDICTS), fail={"collate": rpc_error(UNAVAILABLE, "collator down")})
    async with offline(sqlite_url, REPLIES, scripted, retry, SWARM_STAGE_TIMEOUT_S="0.3") as swarm:
        run, error = await swarm.run(refine=False)
    assert error is None and run.status == pb.RUN_STATUS_SUCCEEDED and not run.consensus.reached
    assert run.analysis.startswith("collation unavailable (UNAVAILABLE: collator down (after ")
    assert run.analysis.endswith("calls; no time left of the 0.3 s deadline)); ranked without consensus")
    assert scripted.calls.count("collate") > 3

    scripted = Scripted(dict(VERDICTS), fail={"assess": rpc_error(EXHAUSTED, "assessor full")})
    async with offline(sqlite_url, REPLIES, scripted, retry, SWARM_STAGE_TIMEOUT_S="0.3") as swarm:
        run, error = await swarm.run(refine=False)
    assert isinstance(error, StageError) and run.status == pb.RUN_STATUS_FAILED
    assert run.error.startswith("assessment failed: RESOURCE_EXHAUSTED: assessor full (after ")
    assert [c.id for c in run.candidates] == ["c1", "c2"], "the answers are kept"
