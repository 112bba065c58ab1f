"""A failed slot is retried on another instance even when every other one is marked unhealthy.

Found by the soak bench at a high fault rate (bench/soak.py --fault-rate 0.3): random faults
mark instances unhealthy for a while (three failures in a row), and a slot whose instance
failed while every other one was marked was not retried at all, so runs lost their quorum that
one more attempt would have saved: 33 of 758 runs failed. Marking is a guess from recent
failures; giving up costs the slot for sure. A healthy instance is still preferred.
"""

from __future__ import annotations

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.stack import Stages, orchestrator
from tests.fakes.openai_server import Behaviour
from tests.fakes.replies import FIB_REPLY
from tests.orchestrator.test_swarm import FIB_TASK, collect, fakes, named


async def test_a_failed_slot_falls_back_to_an_instance_marked_unhealthy(stages: Stages, sqlite_url: str) -> None:
    one = pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True)
    async with (
        fakes((Behaviour.ANSWER, FIB_REPLY), (Behaviour.ANSWER, FIB_REPLY)) as (first, second),
        orchestrator(
            stages, named([first, second]), sqlite_url, SWARM_UNHEALTHY_AFTER="1", SWARM_TEST_WRITERS="0"
        ) as orch,
    ):
        second.enqueue(Behaviour.EMPTY)  # the second instance fails once: marked unhealthy
        events, error = await collect(orch.stub, pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, skip_refine=True))
        assert error is None and [f.instance for f in events[-1].done.failures] == ["fake-2"]
        first.enqueue(Behaviour.EMPTY)  # now the only healthy one fails too
        events, error = await collect(orch.stub, one)
    run = events[-1].done
    assert error is None and run.status == pb.RUN_STATUS_SUCCEEDED, run.error
    [failure] = run.failures
    assert (failure.instance, failure.will_retry) == ("fake-1", True)
    assert [c.instance for c in run.candidates] == ["fake-2"]
