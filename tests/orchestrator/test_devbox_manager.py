"""Devbox-hosted LLM instances through the real Runloop SDK, against the fake Runloop API.

The fake's tunnel gateway forwards to a fake OpenAI server, so provisioning is exercised end to
end: create -> wait until running -> enable the tunnel -> GET /v1/models through it. Idle time is
read from a ``FakeClock`` moved by hand and ``maintain()`` is called directly, so nothing here
waits for an idle period or a health-check interval.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from swarm_bench.fake_runloop import FakeClock, FakeRunloopAPI, Fault
from swarm_orchestrator.devbox_config import DevboxInstancesConfig
from swarm_orchestrator.devbox_manager import DevboxInstances, SlotState
from swarmlib import ConfigError, InstanceSpec, LLMConnectError
from tests.fakes.openai_server import FakeLLMServer

PORT = 8080
IDLE_S = 60.0
Factory = Callable[..., DevboxInstances]


class Recorder:
    """A ``DevboxListener`` that remembers what it was told, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, str]] = []

    def ready(self, spec: InstanceSpec) -> None:
        self.events.append(("ready", spec.name, spec.base_url))

    def unavailable(self, spec: InstanceSpec, reason: str) -> None:
        self.events.append(("unavailable", spec.name, reason))

    def on_demand(self, spec: InstanceSpec) -> None:
        self.events.append(("on_demand", spec.name, spec.base_url))

    def probe_failed(self, name: str, reason: str) -> None:
        self.events.append(("probe_failed", name, reason))

    def kinds(self, name: str) -> list[str]:
        return [kind for kind, who, _ in self.events if who == name]


@pytest.fixture
async def fake() -> AsyncIterator[FakeRunloopAPI]:
    async with FakeRunloopAPI() as server:
        yield server


@pytest.fixture
async def llm(fake: FakeRunloopAPI) -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(model="qwen2.5-coder-0.5b-instruct") as server:
        fake.serve(PORT, server.port)
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


def devbox_config(fake: FakeRunloopAPI, **settings: Any) -> DevboxInstancesConfig:
    """Devbox instances aimed at ``fake``: quick probes, few retries, ``settings`` overriding."""
    values: dict[str, Any] = {
        "count": 1,
        "blueprint": "bpt_qwen",
        "port": PORT,
        "idle_shutdown_s": IDLE_S,
        "probe_interval_s": 0.01,
        "ready_timeout_s": 30.0,
        "max_retries": 2,
        "api_key": fake.api_key,
        "base_url": fake.base_url,
        "tunnel_url": fake.tunnel_url,
        **settings,
    }
    return DevboxInstancesConfig(**values)


@pytest.fixture
async def make(fake: FakeRunloopAPI, clock: FakeClock, recorder: Recorder) -> AsyncIterator[Factory]:
    made: list[DevboxInstances] = []
    async with httpx.AsyncClient() as http:

        def build(failures_to_replace: int = 2, tracer: Any = None, **settings: Any) -> DevboxInstances:
            devboxes = DevboxInstances(
                devbox_config(fake, **settings),
                http,
                listener=recorder,
                clock=clock,
                failures_to_replace=failures_to_replace,
                tracer=tracer,
            )
            made.append(devboxes)
            return devboxes

        yield build
        for devboxes in made:
            await devboxes.aclose()


def tunnel_base(fake: FakeRunloopAPI, box_id: str) -> str:
    tunnel = fake.devboxes[box_id].tunnel
    assert tunnel is not None
    return fake.tunnel_url.format(port=PORT, tunnel_key=tunnel["tunnel_key"]) + "/v1"


async def until(predicate: Callable[[], bool]) -> None:
    """Yield to the loop until ``predicate`` holds (the test's own timeout bounds it).

    Polled: the fakes signal no event when they record a request or create a devbox.
    """
    while not predicate():  # noqa: ASYNC110
        await asyncio.sleep(0.005)


async def test_warm_start_provisions_each_instance_and_waits_for_its_server(
    fake: FakeRunloopAPI, make: Factory, recorder: Recorder
) -> None:
    async with FakeLLMServer() as llm:
        devboxes = make(count=2)
        devboxes.start()
        # Nothing listens on the port yet, as while the model loads: the probes get 502 and go on.
        await until(lambda: sum(r.status == 502 for r in fake.calls("tunnel")) >= 4)
        assert all(devboxes.slot(name).state is SlotState.STARTING for name in devboxes.names)
        fake.serve(PORT, llm.port)
        await devboxes.wait_ready()

    creates = fake.calls("create")
    assert len(creates) == 2
    assert sorted(c.body["name"] for c in creates) == ["swarm-devbox-1", "swarm-devbox-2"]
    for create in creates:
        assert create.body["blueprint_id"] == "bpt_qwen"
        # Runloop's own idle shutdown, a little after ours: a backstop if the orchestrator dies.
        after_idle = create.body["launch_parameters"]["lifecycle"]["after_idle"]
        assert after_idle["on_idle"] == "shutdown" and after_idle["idle_time_seconds"] > IDLE_S
    keys = [r.idempotency_key or "" for r in [*creates, *fake.calls("enable_tunnel")]]
    assert len(set(keys)) == 4 and all(k.startswith(("swarm-create-", "swarm-tunnel-")) for k in keys)
    assert all(r.body == {"auth_mode": "open", "http_keep_alive": True} for r in fake.calls("enable_tunnel"))

    for name in devboxes.names:
        slot = devboxes.slot(name)
        assert slot.state is SlotState.READY and slot.devbox_id is not None
        assert slot.spec.base_url == tunnel_base(fake, slot.devbox_id)
        assert slot.spec.model == "qwen2.5-coder-0.5b-instruct"
        assert recorder.kinds(name) == ["unavailable", "ready"]
        assert ("ready", name, slot.spec.base_url) in recorder.events
    answered = [r for r in fake.calls("tunnel") if r.status == 200]
    assert {r.path.rsplit("/v1", 1)[1] for r in answered} == {"/models"}
    assert len(llm.requests) == 2


async def test_per_run_mode_provisions_at_first_use_once_for_concurrent_callers(
    fake: FakeRunloopAPI, llm: FakeLLMServer, make: Factory
) -> None:
    devboxes = make(count=2, mode="per-run")
    devboxes.start()
    await devboxes.settle()
    assert fake.calls("create") == []

    async def call() -> str:
        async with devboxes.using("devbox-1") as spec, httpx.AsyncClient() as http:
            response = await http.post(
                spec.base_url + "/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}
            )
            return str(response.json()["choices"][0]["message"]["content"])

    answers = await asyncio.gather(call(), call(), call())
    assert all("def fib" in answer for answer in answers)
    [create] = fake.calls("create")
    assert create.body["name"] == "swarm-devbox-1"
    assert devboxes.slot("devbox-2").state is SlotState.DOWN
    assert len(llm.chat_requests) == 3


async def test_idle_devbox_is_shut_down_then_provisioned_again_at_next_use(
    fake: FakeRunloopAPI, llm: FakeLLMServer, make: Factory, clock: FakeClock, recorder: Recorder
) -> None:
    devboxes = make()
    devboxes.start()
    await devboxes.wait_ready()
    async with devboxes.using("devbox-1"):
        pass
    [first] = fake.devboxes
    clock.advance(IDLE_S - 1)
    await devboxes.maintain()
    assert fake.statuses() == {first: "running"}
    assert devboxes.slot("devbox-1").state is SlotState.READY

    clock.advance(2)
    await devboxes.maintain()
    await devboxes.settle()
    assert fake.statuses() == {first: "shutdown"}
    [shutdown] = fake.calls("shutdown", first)
    assert shutdown.query == {}  # nothing in flight: no need to force
    assert (shutdown.idempotency_key or "").startswith("swarm-shutdown-")
    slot = devboxes.slot("devbox-1")
    assert slot.state is SlotState.DOWN and slot.spec.base_url.endswith(".invalid/v1")
    assert recorder.events[-1] == ("on_demand", "devbox-1", slot.spec.base_url)

    await devboxes.maintain()  # an idle-retired instance waits for its next use
    assert len(fake.calls("create")) == 1
    async with devboxes.using("devbox-1") as spec:
        [second] = [box for box in fake.devboxes if box != first]
        assert spec.base_url == tunnel_base(fake, second)
    assert len(fake.calls("create")) == 2


async def test_devbox_in_use_is_kept_however_long_the_call_takes(
    fake: FakeRunloopAPI, llm: FakeLLMServer, make: Factory, clock: FakeClock
) -> None:
    devboxes = make()
    devboxes.start()
    await devboxes.wait_ready()
    async with devboxes.using("devbox-1"):
        clock.advance(IDLE_S * 10)
        await devboxes.maintain()
        assert list(fake.statuses().values()) == ["running"]
    clock.advance(IDLE_S - 1)  # idle time counts from the end of the last call
    await devboxes.maintain()
    assert list(fake.statuses().values()) == ["running"]
    assert fake.calls("shutdown") == []


async def test_devbox_that_died_is_replaced_under_the_same_name(
    fake: FakeRunloopAPI, llm: FakeLLMServer, make: Factory, recorder: Recorder
) -> None:
    devboxes = make()
    devboxes.start()
    await devboxes.wait_ready()
    [dead] = fake.devboxes
    old_url = devboxes.slot("devbox-1").spec.base_url
    fake.devboxes[dead].failure_reason = "out_of_memory"
    fake.devboxes[dead].move("failure")

    await devboxes.maintain()
    assert devboxes.slot("devbox-1").state is SlotState.STARTING
    await devboxes.wait_ready()
    await devboxes.settle()
    [replacement] = [box for box in fake.devboxes if box != dead]
    assert fake.statuses()[replacement] == "running"
    assert [r.query for r in fake.calls("shutdown", dead)] == [{"force": "true"}]
    slot = devboxes.slot("devbox-1")
    assert slot.devbox_id == replacement and slot.spec.base_url == tunnel_base(fake, replacement) != old_url
    assert recorder.kinds("devbox-1")[-2:] == ["unavailable", "ready"]
    async with devboxes.using("devbox-1") as spec:
        assert spec.base_url == slot.spec.base_url


async def test_server_that_stops_answering_is_replaced_after_failed_checks(
    fake: FakeRunloopAPI, llm: FakeLLMServer, make: Factory, recorder: Recorder
) -> None:
    devboxes = make(failures_to_replace=2)
    devboxes.start()
    await devboxes.wait_ready()
    [crashed] = fake.devboxes
    fake.crash_server(crashed, PORT)  # the devbox runs, its model server does not

    await devboxes.maintain()
    assert devboxes.slot("devbox-1").devbox_id == crashed
    assert recorder.kinds("devbox-1")[-1] == "probe_failed"
    assert "502" in recorder.events[-1][2]

    await devboxes.maintain()
    await devboxes.wait_ready()
    await devboxes.settle()
    slot = devboxes.slot("devbox-1")
    assert slot.state is SlotState.READY and slot.devbox_id not in (None, crashed)
    assert fake.statuses()[crashed] == "shutdown"


async def test_healthy_devbox_is_checked_without_being_replaced(
    fake: FakeRunloopAPI, llm: FakeLLMServer, make: Factory, recorder: Recorder
) -> None:
    devboxes = make()
    devboxes.start()
    await devboxes.wait_ready()
    [box] = fake.devboxes
    await devboxes.maintain()
    assert len(fake.calls("retrieve", box)) == 1
    assert recorder.kinds("devbox-1") == ["unavailable", "ready", "ready"]
    assert len(fake.calls("create")) == 1


async def test_failed_boot_is_reported_and_the_next_use_provisions_another(
    fake: FakeRunloopAPI, llm: FakeLLMServer, make: Factory, recorder: Recorder
) -> None:
    devboxes = make(mode="per-run")
    fake.fail_next_boot("health_check_failed")
    boot_failed = r"devbox-1: no devbox to serve it: .*non-running terminal state: failure"
    with pytest.raises(LLMConnectError, match=boot_failed):
        async with devboxes.using("devbox-1"):
            pass
    await devboxes.settle()
    [failed] = fake.devboxes
    assert [r.query for r in fake.calls("shutdown", failed)] == [{"force": "true"}]
    assert devboxes.slot("devbox-1").state is SlotState.DOWN
    assert recorder.kinds("devbox-1") == ["unavailable", "unavailable"]

    await devboxes.maintain()  # per-run: offered again rather than booted in the background
    assert recorder.kinds("devbox-1")[-1] == "on_demand"
    async with devboxes.using("devbox-1") as spec:
        assert spec.base_url.startswith(fake.base_url)
    assert len(fake.calls("create")) == 2


async def test_server_that_never_answers_is_given_up_on_and_its_devbox_shut_down(
    fake: FakeRunloopAPI, make: Factory
) -> None:
    devboxes = make(mode="per-run", ready_timeout_s=0.2)  # and nothing serves the port
    with pytest.raises(LLMConnectError, match=r"did not answer GET /v1/models through the tunnel within 0.2s"):
        async with devboxes.using("devbox-1"):
            pass
    await devboxes.settle()
    assert list(fake.statuses().values()) == ["shutdown"]


async def test_lost_answers_are_retried_with_the_same_idempotency_key(
    fake: FakeRunloopAPI, llm: FakeLLMServer, make: Factory
) -> None:
    fake.inject("create", Fault(503, after=True))
    fake.inject("enable_tunnel", Fault(500, after=True))
    devboxes = make()
    devboxes.start()
    await devboxes.wait_ready()
    assert len(fake.devboxes) == 1  # the create acted once although its first answer was lost
    for op in ("create", "enable_tunnel"):
        first, retry = fake.calls(op)
        assert first.idempotency_key == retry.idempotency_key and retry.replayed
    assert devboxes.slot("devbox-1").state is SlotState.READY


async def test_close_shuts_down_every_devbox_even_while_booting(
    fake: FakeRunloopAPI, llm: FakeLLMServer, make: Factory
) -> None:
    fake.provision_delay_s = 60.0  # still provisioning when closed
    devboxes = make(count=2)
    devboxes.start()
    await until(lambda: len(fake.devboxes) == 2)
    await devboxes.aclose()
    assert sorted(fake.statuses().values()) == ["shutdown", "shutdown"]
    assert all(r.query == {"force": "true"} for r in fake.calls("shutdown"))
    with pytest.raises(LLMConnectError, match="shut down"):
        async with devboxes.using("devbox-1"):
            pass


async def test_api_key_appears_in_no_log_error_or_span(
    fake: FakeRunloopAPI, llm: FakeLLMServer, make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    caplog.set_level(logging.DEBUG)
    wrong = "rl_wrong_key_77f0c1"

    refused = make(mode="per-run", api_key=wrong, tracer=tracer)
    with pytest.raises(LLMConnectError) as caught:
        async with refused.using("devbox-1"):
            pass
    assert "refused the API key" in str(caught.value) and "RUNLOOP_API_KEY" in str(caught.value)

    working = make(tracer=tracer)
    working.start()
    await working.wait_ready()
    fake.devboxes[next(iter(fake.devboxes))].move("failure")
    await working.maintain()
    await working.wait_ready()

    spans = exporter.get_finished_spans()
    assert {s.name for s in spans} == {"devbox.provision"}
    assert {s.attributes["swarm.instance"] for s in spans if s.attributes} == {"devbox-1"}
    texts = [str(caught.value), caplog.text, repr(working), repr(devbox_config(fake))]
    texts += [str(dict(s.attributes or {})) + str([e.attributes for e in s.events]) for s in spans]
    for key in (wrong, fake.api_key):
        assert not any(key in text for text in texts)


def test_config_from_env_names_the_variable_at_fault() -> None:
    base = {"SWARM_DEVBOX_INSTANCES": "2", "SWARM_DEVBOX_BLUEPRINT": "qwen-llama", "RUNLOOP_API_KEY": "rl_secret_0b5e"}
    config = DevboxInstancesConfig.from_env(base)
    assert config.names == ["devbox-1", "devbox-2"] and config.keep_warm and "rl_secret_0b5e" not in repr(config)
    assert DevboxInstancesConfig.from_env({**base, "SWARM_DEVBOX_MODE": "Per-Run"}).mode == "per-run"
    assert DevboxInstancesConfig.from_env({}).count == 0  # off: neither key nor blueprint needed

    cases = {
        "SWARM_DEVBOX_INSTANCES": {"SWARM_DEVBOX_INSTANCES": "two"},
        "SWARM_DEVBOX_INSTANCES=17": {"SWARM_DEVBOX_INSTANCES": "17"},
        "RUNLOOP_API_KEY": {"RUNLOOP_API_KEY": ""},
        "SWARM_DEVBOX_BLUEPRINT": {"SWARM_DEVBOX_BLUEPRINT": ""},
        "SWARM_DEVBOX_MODE": {"SWARM_DEVBOX_MODE": "sometimes"},
        "SWARM_DEVBOX_PORT": {"SWARM_DEVBOX_PORT": "0"},
        "SWARM_DEVBOX_IDLE_SHUTDOWN_S": {"SWARM_DEVBOX_IDLE_SHUTDOWN_S": "soon"},
        "SWARM_DEVBOX_TUNNEL_URL": {"SWARM_DEVBOX_TUNNEL_URL": "https://tunnel.example/{port}"},
        "SWARM_DEVBOX_TUNNEL_URL=": {"SWARM_DEVBOX_TUNNEL_URL": "https://{tunnel_key}.example/{host}"},
    }
    for variable, override in cases.items():
        with pytest.raises(ConfigError, match=variable.rstrip("=")):
            DevboxInstancesConfig.from_env({**base, **override})


def test_static_instances_are_optional_with_devboxes_and_may_not_take_their_names() -> None:
    devboxes = DevboxInstancesConfig(count=2, blueprint="bpt_qwen", api_key="k")
    assert devboxes.static_instances({}) == ()
    with pytest.raises(ConfigError, match="no instances configured"):
        DevboxInstancesConfig().static_instances({})
    clash = '[{"name": "devbox-2", "base_url": "http://127.0.0.1:1/v1", "model": "qwen"}]'
    with pytest.raises(ConfigError, match=r"SWARM_INSTANCES: instance name\(s\) \['devbox-2'\]"):
        devboxes.static_instances({"SWARM_INSTANCES": clash})
