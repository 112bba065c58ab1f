"""The shared Runloop plumbing through the real SDK against the fake Runloop API: status, shutdown, blueprints."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from runloop_api_client import AsyncRunloop

from swarm_bench.fake_runloop import FakeRunloopAPI, Fault
from swarmlib import SandboxUnavailableError
from swarmlib._runloop import blueprint_ref, devbox_stopped, open_client, polling, shutdown_devbox


@pytest.fixture
async def fake() -> AsyncIterator[FakeRunloopAPI]:
    async with FakeRunloopAPI() as server:
        yield server


@pytest.fixture
async def client(fake: FakeRunloopAPI) -> AsyncIterator[AsyncRunloop]:
    sdk = open_client(fake.api_key, fake.base_url, max_retries=1)
    yield sdk
    await sdk.close()


async def running_devbox(client: AsyncRunloop) -> str:
    view = await client.devboxes.create(name="t")
    await client.devboxes.await_running(view.id, polling_config=polling(10))
    return view.id


def test_blueprint_ref_names_an_id_a_name_or_nothing() -> None:
    assert blueprint_ref("bpt_123") == {"blueprint_id": "bpt_123"}
    assert blueprint_ref("qwen-llama-server") == {"blueprint_name": "qwen-llama-server"}
    assert blueprint_ref("") == {}


async def test_devbox_stopped_says_status_and_reason(fake: FakeRunloopAPI, client: AsyncRunloop) -> None:
    box_id = await running_devbox(client)
    assert await devbox_stopped(client, box_id, 1) is None
    fake.devboxes[box_id].failure_reason = "out_of_memory"
    fake.devboxes[box_id].move("failure")
    assert await devbox_stopped(client, box_id, 1) == "status failure (out_of_memory)"
    fake.devboxes[box_id].failure_reason = None
    fake.devboxes[box_id].move("suspended")
    assert await devbox_stopped(client, box_id, 1) == "status suspended"


async def test_devbox_stopped_raises_when_the_api_cannot_say(fake: FakeRunloopAPI, client: AsyncRunloop) -> None:
    box_id = await running_devbox(client)
    fake.inject("retrieve", Fault(503, "down"), Fault(503, "down"))
    with pytest.raises(SandboxUnavailableError, match=f"to check devbox {box_id}: HTTP 503 after 1 retries"):
        await devbox_stopped(client, box_id, 1)


async def test_shutdown_sends_a_key_and_force_and_never_raises(
    fake: FakeRunloopAPI, client: AsyncRunloop, caplog: pytest.LogCaptureFixture
) -> None:
    box_id = await running_devbox(client)
    await shutdown_devbox(client, box_id, force=True, retries=1)
    assert fake.devboxes[box_id].status == "shutdown"
    [call] = fake.calls("shutdown", box_id)
    assert call.query == {"force": "true"} and (call.idempotency_key or "").startswith("swarm-shutdown-")

    other = await running_devbox(client)
    fake.inject("shutdown", Fault(500, "boom"), Fault(500, "boom"))
    with caplog.at_level(logging.WARNING):
        await shutdown_devbox(client, other, force=False, retries=1)  # best effort: logged, not raised
    assert f"Runloop API failed to shut down devbox {other}: HTTP 500 after 1 retries" in caplog.text
    assert [r.query for r in fake.calls("shutdown", other)] == [{}, {}]
    assert fake.api_key not in caplog.text
