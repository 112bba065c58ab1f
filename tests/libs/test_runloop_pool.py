"""The devbox pool's lifecycle against the fake Runloop API: idle suspend, resume on demand,
retirement beyond the pool size, health checks, failed boots, and forced shutdown on close.

Idle time is read from a ``FakeClock`` the tests move by hand, so nothing here sleeps through an
idle period; ``maintain()`` is called directly instead of waiting for the background loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from swarm_bench.fake_runloop import FakeClock, FakeRunloopAPI, sandbox_config
from swarmlib import SandboxUnavailableError
from swarmlib._sandbox_runloop import RunloopSandbox

Factory = Callable[..., RunloopSandbox]
SUSPEND_S, SHUTDOWN_S = 60.0, 600.0


@pytest.fixture
async def fake() -> AsyncIterator[FakeRunloopAPI]:
    async with FakeRunloopAPI() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make(fake: FakeRunloopAPI, clock: FakeClock) -> AsyncIterator[Factory]:
    made: list[RunloopSandbox] = []

    def build(**settings: Any) -> RunloopSandbox:
        settings = {"idle_suspend_s": SUSPEND_S, "idle_shutdown_s": SHUTDOWN_S, **settings}
        sandbox = RunloopSandbox(sandbox_config(fake, **settings), clock=clock, maintenance=False)
        made.append(sandbox)
        return sandbox

    yield build
    for sandbox in made:
        await sandbox.aclose()


async def test_idle_devbox_is_suspended_then_resumed_on_demand(
    fake: FakeRunloopAPI, make: Factory, clock: FakeClock
) -> None:
    sandbox = make()
    await sandbox.run("pass\n", 5.0)
    await sandbox.wait_idle()
    [box] = fake.devboxes
    clock.advance(SUSPEND_S - 1)
    await sandbox.pool.maintain()
    assert fake.statuses() == {box: "running"}
    clock.advance(2)
    await sandbox.pool.maintain()
    assert fake.statuses() == {box: "suspended"}
    assert sandbox.pool.counts()["suspended"] == 1
    [suspend] = fake.calls("suspend", box)
    assert (suspend.idempotency_key or "").startswith("swarm-suspend-")

    result = await sandbox.run("print('back')\n", 5.0)
    assert result.stdout == "back\n"
    assert fake.statuses() == {box: "running"}
    [resume] = fake.calls("resume", box)
    assert (resume.idempotency_key or "").startswith("swarm-resume-")
    assert len(fake.calls("create")) == 1


async def test_devboxes_beyond_the_pool_size_are_shut_down_after_idling(
    fake: FakeRunloopAPI, make: Factory, clock: FakeClock
) -> None:
    sandbox = make(pool_size=1, max_devboxes=2)
    program = "import time\ntime.sleep(0.1)\n"
    await asyncio.gather(sandbox.run(program, 5.0), sandbox.run(program, 5.0))
    await sandbox.wait_idle()
    assert len(fake.live()) == 2
    clock.advance(SHUTDOWN_S + 1)
    await sandbox.pool.maintain()
    assert sorted(fake.statuses().values()) == ["shutdown", "suspended"]
    [retired] = fake.calls("shutdown")
    assert retired.query == {}  # nothing in progress on an idle devbox: no need to force
    assert sandbox.pool.counts()["suspended"] == 1


async def test_pool_size_devboxes_are_kept_however_long_they_idle(
    fake: FakeRunloopAPI, make: Factory, clock: FakeClock
) -> None:
    sandbox = make(pool_size=2, max_devboxes=2)
    await sandbox.warm_up()
    clock.advance(SHUTDOWN_S * 10)
    await sandbox.pool.maintain()
    await sandbox.pool.maintain()
    assert sorted(fake.statuses().values()) == ["suspended", "suspended"]
    assert fake.calls("shutdown") == []


async def test_maintenance_health_checks_idle_devboxes_and_replaces_dead_ones(
    fake: FakeRunloopAPI, make: Factory
) -> None:
    sandbox = make(pool_size=1)
    await sandbox.warm_up()
    [dead] = fake.devboxes
    await sandbox.pool.maintain()
    assert len(fake.calls("retrieve", dead)) == 1
    fake.devboxes[dead].failure_reason = "out_of_memory"
    fake.devboxes[dead].move("failure")
    await sandbox.pool.maintain()
    await sandbox.wait_idle()
    [(replacement, status)] = [(b, s) for b, s in fake.statuses().items() if b != dead]
    assert status == "running" and sandbox.pool.devbox_ids == [replacement]
    assert [r.query for r in fake.calls("shutdown", dead)] == [{"force": "true"}]
    assert (await sandbox.run("print('ok')\n", 5.0)).stdout == "ok\n"


async def test_a_devbox_that_fails_to_boot_is_reported_and_shut_down(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make(pool_size=0)
    fake.fail_next_boot("health_check_failed")
    with pytest.raises(SandboxUnavailableError, match=r"boot devbox .*failure"):
        await sandbox.run("pass\n", 5.0)
    await sandbox.wait_idle()
    [failed] = fake.devboxes
    assert fake.calls("shutdown", failed)
    assert sandbox.pool.devbox_ids == []
    assert (await sandbox.run("print('second try')\n", 5.0)).stdout == "second try\n"


async def test_a_suspended_devbox_that_will_not_resume_is_replaced(
    fake: FakeRunloopAPI, make: Factory, clock: FakeClock
) -> None:
    sandbox = make(pool_size=1)
    await sandbox.warm_up()
    [gone] = fake.devboxes
    clock.advance(SUSPEND_S + 1)
    await sandbox.pool.maintain()
    fake.devboxes[gone].move("shutdown")  # e.g. Runloop's own TTL ended it while suspended
    result = await sandbox.run("print('elsewhere')\n", 5.0)
    assert result.stdout == "elsewhere\n"
    assert [r.status for r in fake.calls("resume", gone)] == [400]
    assert len(fake.calls("create")) == 2


async def test_close_forces_shutdown_even_during_a_suspend(
    fake: FakeRunloopAPI, make: Factory, clock: FakeClock
) -> None:
    fake.suspend_delay_s = 30.0
    sandbox = make(pool_size=1)
    await sandbox.warm_up()
    [box] = fake.devboxes
    clock.advance(SUSPEND_S + 1)
    maintaining = asyncio.ensure_future(sandbox.pool.maintain())
    await asyncio.wait_for(fake.until_status(box, "suspending"), 5.0)
    await sandbox.aclose()
    await asyncio.wait_for(maintaining, 5.0)
    assert fake.statuses() == {box: "shutdown"}
    assert [(r.query, r.status) for r in fake.calls("shutdown")] == [({"force": "true"}, 200)]


async def test_close_shuts_down_every_devbox_it_created(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make(pool_size=2, max_devboxes=3)
    await sandbox.warm_up()
    await sandbox.run("pass\n", 5.0)
    await sandbox.aclose()
    assert len(fake.devboxes) == 2 and fake.live() == []
    with pytest.raises(SandboxUnavailableError, match="closed"):
        await sandbox.run("pass\n", 5.0)


@pytest.mark.parametrize(
    ("blueprint", "sent"),
    [("bpt_2f9c", {"blueprint_id": "bpt_2f9c"}), ("swarm-python", {"blueprint_name": "swarm-python"}), ("", {})],
)
async def test_devboxes_are_created_from_the_configured_blueprint(
    fake: FakeRunloopAPI, make: Factory, blueprint: str, sent: dict[str, str]
) -> None:
    await make(blueprint=blueprint).warm_up()
    [create] = fake.calls("create")
    assert {k: v for k, v in create.body.items() if k.startswith("blueprint")} == sent
    assert create.body["metadata"] == {"swarm": "sandbox"}


async def test_concurrent_callers_boot_their_devboxes_in_parallel(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make(pool_size=0, max_devboxes=3)
    program = "import time\ntime.sleep(0.1)\nprint('ok')\n"
    results = await asyncio.gather(*(sandbox.run(program, 5.0) for _ in range(3)))
    assert [r.stdout for r in results] == ["ok\n"] * 3
    assert len(fake.calls("create")) == 3
