"""Pure pieces of the orchestrator: sizing, quorum, slot assignment and health accounting."""

from __future__ import annotations

import httpx
import pytest

from swarm_orchestrator.pool import InstancePool
from swarm_orchestrator.sizing import MAX_AUTO_SIZE, MIN_AUTO_SIZE, auto_swarm_size, quorum_for
from swarmlib import InstanceSpec


def _pool(*names: str, unhealthy_after: int = 2) -> InstancePool:
    specs = tuple(InstanceSpec(name=n, base_url=f"http://127.0.0.1:1/{n}/v1", model="m") for n in names)
    return InstancePool(specs, {}, unhealthy_after)


@pytest.mark.parametrize(("size", "fraction", "quorum"), [(1, 0.5, 1), (3, 0.5, 2), (10, 0.7, 7), (5, 1.0, 5)])
def test_quorum_rounds_up_exactly(size: int, fraction: float, quorum: int) -> None:
    assert quorum_for(size, fraction) == quorum


def test_auto_size_grows_with_complexity_within_bounds() -> None:
    assert auto_swarm_size("Write fib(n).") == MIN_AUTO_SIZE
    hard = "\n".join(
        [f"- requirement {i}: handle edge cases, concurrency and an efficient parser" for i in range(30)]
        + ["def a():\n    pass", "def b():\n    pass"]
    )
    assert auto_swarm_size(hard) == MAX_AUTO_SIZE


def test_assignment_rotates_over_every_instance() -> None:
    pool = _pool("a", "b", "c", "d", "e")
    used = set(pool.assign(3, pool.names)) | set(pool.assign(3, pool.names))
    assert used == {"a", "b", "c", "d", "e"}


def test_a_fallback_prefers_a_healthy_instance_then_the_fewest_failures_in_a_row() -> None:
    pool = _pool("a", "b", "c", "d")  # unhealthy after 2 failures in a row
    for name, failures in (("b", 2), ("c", 1)):
        for _ in range(failures):
            pool.failed(name, "boom")
    assert pool.fallback_for("a", pool.names) == "d"  # healthy and never failed, before c (healthy, 1)
    for name, failures in (("c", 2), ("d", 3)):
        for _ in range(failures):
            pool.failed(name, "boom")
    assert not any(pool.is_healthy(n) for n in "bcd")
    assert pool.fallback_for("a", pool.names) == "b"  # b 2 in a row, c 3, d 3


def test_in_flight_is_released_whatever_the_outcome_and_unhealthy_after_threshold() -> None:
    pool = _pool("a", "b")
    pool.started("a")
    pool.failed("a", "boom")
    pool.finished("a")
    pool.started("a")
    pool.failed("a", "boom again")
    pool.finished("a")
    state = next(s for s in pool.states() if s.spec.name == "a")
    assert state.in_flight == 0 and not state.healthy and state.last_error == "boom again"
    assert pool.assign(2, pool.names) == ["b", "b"]
    assert pool.fallback_for("b", pool.names) == "a"  # marked unhealthy, but the only other one
    assert pool.fallback_for("b", ["b"]) is None
    pool.succeeded("a")
    assert pool.is_healthy("a")


async def test_health_probe_failures_count_like_answer_failures_and_recovery_restores() -> None:
    from tests.fakes.openai_server import Behaviour, FakeLLMServer

    async with FakeLLMServer(behaviour=Behaviour.HTTP_500) as server, httpx.AsyncClient() as http:
        pool = InstancePool((InstanceSpec(name="x", base_url=server.base_url, model="qwen"),), {}, 2)
        await pool.check(http)
        assert pool.is_healthy("x")  # one failed probe is not enough
        await pool.check(http)
        assert not pool.is_healthy("x")
        server.behaviour = Behaviour.ANSWER
        await pool.check(http)
        assert pool.is_healthy("x")


async def test_health_probe_of_an_instance_with_a_missing_key_marks_only_that_one() -> None:
    specs = (InstanceSpec(name="keyed", base_url="http://127.0.0.1:9/v1", model="m", api_key_env="SWARM_NO_SUCH_KEY"),)
    pool = InstancePool(specs, {}, 1)
    async with httpx.AsyncClient() as http:
        await pool.check(http)
    assert not pool.is_healthy("keyed")
    assert "SWARM_NO_SUCH_KEY" in pool.states()[0].last_error
