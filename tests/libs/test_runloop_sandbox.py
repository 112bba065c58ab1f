"""Contract tests of the Runloop backend: the real SDK talking to the fake Runloop API.

They check what crosses the wire (routes, bodies, idempotency keys, retries) and what the caller
gets back (exit code, output, reason), never how long anything took.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from swarm_bench.fake_runloop import FakeClock, FakeRunloopAPI, Fault, sandbox_config
from swarmlib import ConfigError, RunloopConfig, SandboxConfig, SandboxLimit, SandboxUnavailableError, open_sandbox
from swarmlib._sandbox_runloop import RunloopSandbox

Factory = Callable[..., RunloopSandbox]
RUN_SCRIPT = "python3 -I main.py"


@pytest.fixture
async def fake() -> AsyncIterator[FakeRunloopAPI]:
    async with FakeRunloopAPI() as server:
        yield server


@pytest.fixture
async def make(fake: FakeRunloopAPI) -> AsyncIterator[Factory]:
    """Build sandboxes aimed at the fake (no background maintenance); close them all afterwards."""
    made: list[RunloopSandbox] = []

    def build(*, tracer_provider: TracerProvider | None = None, **settings: Any) -> RunloopSandbox:
        tracer = tracer_provider.get_tracer("test") if tracer_provider else None
        sandbox = RunloopSandbox(sandbox_config(fake, **settings), clock=FakeClock(), maintenance=False, tracer=tracer)
        made.append(sandbox)
        return sandbox

    yield build
    for sandbox in made:
        await sandbox.aclose()


async def test_runs_the_program_with_its_files_and_returns_exit_code_and_output(
    fake: FakeRunloopAPI, make: Factory
) -> None:
    sandbox = make()
    program = "import sys\nprint(open('data.txt').read().upper())\nprint('warned', file=sys.stderr)\nsys.exit(3)\n"
    result = await sandbox.run(program, 5.0, {"data.txt": "hello"})
    assert (result.exit_code, result.timed_out, result.reason) == (3, False, "")
    assert result.limit is SandboxLimit.NONE
    assert result.stdout == "HELLO\n"
    assert result.stderr == "warned\n"
    writes = {r.body["file_path"].split("/")[-1]: r.body["contents"] for r in fake.calls("write_file_contents")}
    assert writes == {"main.py": program, "data.txt": "hello"}
    workdirs = {r.body["file_path"].split("/")[0] for r in fake.calls("write_file_contents")}
    assert len(workdirs) == 1 and workdirs.pop().startswith("swarm-exec-")
    [run] = [r for r in fake.calls("execute") if RUN_SCRIPT in r.body["command"]]
    assert "timeout -s KILL 5.000" in run.body["command"]
    assert run.headers["authorization"] == f"Bearer {fake.api_key}"


async def test_devbox_is_reused_and_each_execution_gets_a_fresh_directory(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make()
    first = await sandbox.run("import os\nopen('left.txt', 'w').write('x')\nprint(os.getcwd())\n", 5.0)
    await sandbox.wait_idle()
    second = await sandbox.run("import os\nprint(os.getcwd(), os.listdir('.'))\n", 5.0)
    await sandbox.wait_idle()
    assert len(fake.calls("create")) == 1
    assert first.stdout.strip() != second.stdout.split()[0]
    assert "left.txt" not in second.stdout
    [box] = fake.devboxes.values()
    assert not (box.home / first.stdout.strip().rsplit("/", 1)[-1]).exists()


async def test_timeout_kills_the_program_and_says_so(make: Factory) -> None:
    result = await make().run("while True:\n    pass\n", 0.3)
    assert result.timed_out
    assert result.reason == "timed out after 0.3s"
    assert result.exit_code == 137
    assert result.limit is SandboxLimit.WALL_TIME


async def test_a_program_killed_before_its_deadline_is_not_a_timeout(make: Factory) -> None:
    result = await make().run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n", 5.0)
    assert (result.exit_code, result.timed_out) == (137, False)
    assert result.reason.startswith("killed by SIGKILL")
    assert result.limit is SandboxLimit.KILLED


async def test_output_is_capped_and_the_overflow_reported(make: Factory) -> None:
    result = await make(cap=4096).run("print('x' * 20000)\n", 5.0)
    assert result.reason == "stdout exceeded 4096 bytes"
    assert result.limit is SandboxLimit.OUTPUT
    assert len(result.stdout.encode()) == 4096
    assert len(result.stderr.encode()) <= 4096


async def test_memory_limit_is_applied_and_named(make: Factory) -> None:
    result = await make().run("x = bytearray(2 * 1024 ** 3)\n", 5.0)
    assert result.exit_code == 1
    assert result.reason == "memory limit of 512 MB reached (MemoryError)"
    assert result.limit is SandboxLimit.MEMORY


async def test_limits_that_end_a_program_with_an_error_are_classified(make: Factory) -> None:
    sandbox = make(cap=4096)
    big = await sandbox.run("with open('big', 'wb') as f:\n    f.write(b'x' * (1 << 20))\n", 5.0)  # past ulimit -f
    assert (big.exit_code, big.reason, big.limit) == (1, "file size limit reached (EFBIG)", SandboxLimit.FILE_SIZE)
    # Limits this backend does not set are classified from the error all the same, without a reason.
    full = await sandbox.run("raise OSError(28, 'No space left on device')\n", 5.0)
    assert (full.exit_code, full.reason, full.limit) == (1, "", SandboxLimit.TMP_SPACE)
    threads = await sandbox.run('raise RuntimeError("can\'t start new thread")\n', 5.0)
    assert (threads.reason, threads.limit) == ("", SandboxLimit.PROCESSES)
    plain = await sandbox.run("raise ValueError('MemoryError is just a word here')\n", 5.0)
    assert plain.limit is SandboxLimit.MEMORY  # the last line is what the backend reads
    caught = await sandbox.run("try:\n    bytearray(2 * 1024 ** 3)\nexcept MemoryError:\n    print('fine')\n", 5.0)
    assert (caught.exit_code, caught.limit) == (0, SandboxLimit.NONE)


async def test_many_output_lines_come_back_whole(make: Factory) -> None:
    result = await make().run("for i in range(300):\n    print(i)\n", 5.0)
    assert result.stdout.splitlines() == [str(i) for i in range(300)]


async def test_5xx_is_retried_with_the_same_idempotency_key(fake: FakeRunloopAPI, make: Factory) -> None:
    fake.inject("create", Fault(503), Fault(502))
    result = await make().run("print('ok')\n", 5.0)
    assert result.stdout == "ok\n"
    creates = fake.calls("create")
    assert [r.status for r in creates] == [503, 502, 200]
    assert [r.headers["x-stainless-retry-count"] for r in creates] == ["0", "1", "2"]
    keys = {r.idempotency_key or "" for r in creates}
    assert len(keys) == 1 and keys.pop().startswith("swarm-create-")
    assert len(fake.devboxes) == 1


async def test_a_lost_answer_is_replayed_not_run_twice(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make()
    await sandbox.run("pass\n", 5.0)
    await sandbox.wait_idle()
    fake.inject("execute", Fault(500, after=True))
    result = await sandbox.run("open('../runs.txt', 'a').write('run\\n')\nprint('done')\n", 5.0)
    assert result.stdout == "done\n"
    runs = [r for r in fake.calls("execute") if "runs.txt" in r.body.get("command", "") or r.replayed]
    [box] = fake.devboxes.values()
    assert (box.home / "runs.txt").read_text() == "run\n"
    retried = [r for r in fake.calls("execute") if r.replayed]
    assert len(retried) == 1
    first = next(r for r in fake.calls("execute") if r.status == 500)
    assert first.idempotency_key == retried[0].idempotency_key
    assert first.body["command_id"] == retried[0].body["command_id"]
    assert runs


async def test_5xx_beyond_the_retries_is_surfaced_clearly(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make(max_retries=2)
    fake.inject("create", Fault(503), Fault(503), Fault(503))
    with pytest.raises(SandboxUnavailableError) as caught:
        await sandbox.run("pass\n", 5.0)
    message = str(caught.value)
    assert "create a devbox" in message and "HTTP 503" in message and "after 2 retries" in message
    assert fake.api_key not in message
    assert (await sandbox.run("print(1)\n", 5.0)).stdout == "1\n"


async def test_429_waits_for_retry_after_then_goes_on(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make()
    fake.inject("write_file_contents", Fault(429, retry_after="0.05"))
    result = await sandbox.run("print('ok')\n", 5.0)
    assert result.stdout == "ok\n"
    assert [r.status for r in fake.calls("write_file_contents")] == [429, 200]


async def test_429_that_persists_says_rate_limit(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make(max_retries=1)
    await sandbox.run("pass\n", 5.0)
    await sandbox.wait_idle()
    fake.inject("write_file_contents", Fault(429), Fault(429))
    with pytest.raises(SandboxUnavailableError, match=r"rate limit \(HTTP 429\).*after 1 retries"):
        await sandbox.run("pass\n", 5.0)
    await sandbox.wait_idle()
    assert sandbox.pool.counts()["idle"] == 1  # the devbox itself was fine and is lent again


async def test_slow_provisioning_is_waited_for_through_the_long_poll() -> None:
    async with FakeRunloopAPI(provision_delay_s=0.2, devbox_long_poll_s=0.05) as fake:
        config = SandboxConfig(
            backend="runloop",
            runloop=RunloopConfig(api_key=fake.api_key, base_url=fake.base_url, pool_size=1, max_devboxes=1),
        )
        sandbox = RunloopSandbox(config, maintenance=False)
        try:
            result = await sandbox.run("print('booted')\n", 5.0)
        finally:
            await sandbox.aclose()
    assert result.stdout == "booted\n"
    polls = fake.calls("wait_for_status")
    assert 408 in [r.status for r in polls] and polls[-1].status == 200
    assert all(r.body["statuses"] == ["running", "failure", "shutdown"] for r in polls)


async def test_devbox_dying_mid_execution_is_reported_and_replaced(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make()
    await sandbox.run("pass\n", 5.0)
    await sandbox.wait_idle()
    [dead] = fake.devboxes
    fake.kill_next_execution(match=RUN_SCRIPT, after_s=0.2, reason="out_of_memory")
    result = await sandbox.run("import time\ntime.sleep(10)\n", 20.0)
    assert result.exit_code is None and not result.timed_out
    assert f"devbox {dead} died during the execution (status failure, out_of_memory)" in result.reason
    assert result.limit is SandboxLimit.NONE  # the devbox failed, not a limit of the program's
    await sandbox.wait_idle()
    assert dead not in sandbox.pool.devbox_ids
    assert [r.query for r in fake.calls("shutdown", dead)] == [{"force": "true"}]
    again = await sandbox.run("print('fresh')\n", 5.0)
    assert again.stdout == "fresh\n"
    assert len(fake.calls("create")) == 2


async def test_a_devbox_that_never_reports_the_end_is_given_up_on(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make(exec_grace_s=0.2)
    fake.freeze_next_execution(match=RUN_SCRIPT)
    result = await sandbox.run("print('lost')\n", 0.1)
    assert result.timed_out and result.exit_code is None
    assert "did not report the end" in result.reason
    assert result.limit is SandboxLimit.WALL_TIME
    await sandbox.wait_idle()
    [box] = fake.devboxes
    assert fake.calls("retrieve", box)  # health-checked before being lent again
    assert (await sandbox.run("print('next')\n", 5.0)).stdout == "next\n"


async def test_file_names_must_be_plain(make: Factory) -> None:
    with pytest.raises(ValueError, match="plain file name"):
        await make().run("pass\n", 5.0, {"../escape.py": ""})


async def test_probe_without_a_key_says_which_variable_to_set(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make(api_key="")
    with pytest.raises(SandboxUnavailableError, match="set RUNLOOP_API_KEY"):
        await sandbox.probe()
    assert sandbox.unavailable_reason is not None and "RUNLOOP_API_KEY" in sandbox.unavailable_reason
    with pytest.raises(SandboxUnavailableError, match="RUNLOOP_API_KEY"):
        await sandbox.run("pass\n", 5.0)
    assert fake.requests == []


async def test_probe_with_a_wrong_key_is_refused_without_echoing_it(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make(api_key="rl_wrong_key_0000")
    with pytest.raises(SandboxUnavailableError) as caught:
        await sandbox.probe()
    assert "refused the API key" in str(caught.value) and "HTTP 401" in str(caught.value)
    assert "rl_wrong_key_0000" not in str(caught.value)
    assert [(r.method, r.path, r.query) for r in fake.requests] == [("GET", "/v1/devboxes", {"limit": "1"})]


async def test_probe_checks_the_api_then_warms_the_pool(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make(pool_size=2, max_devboxes=3)
    await sandbox.probe()
    assert sandbox.unavailable_reason is None
    await sandbox.warm_up()
    assert sandbox.pool.counts()["idle"] == 2
    await sandbox.run("pass\n", 5.0)
    assert len(fake.calls("create")) == 2


async def test_the_api_key_never_reaches_logs_spans_or_reprs(
    fake: FakeRunloopAPI, make: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    sandbox = make(tracer_provider=provider)
    fake.inject("create", Fault(503))
    fake.inject("execute", Fault(500), Fault(500), Fault(500))
    with pytest.raises(SandboxUnavailableError):
        await sandbox.run("print(1)\n", 5.0)
    await sandbox.run("print(2)\n", 5.0)
    await sandbox.wait_idle()
    with pytest.raises(SandboxUnavailableError):
        await make(api_key="rl_other_secret_77").probe()
    pool = sandbox.pool
    await sandbox.aclose()
    secrets = (fake.api_key, "rl_other_secret_77")
    assert "Retrying request" in caplog.text  # the SDK's own log lines were captured
    spans = exporter.get_finished_spans()
    assert spans
    for text in (caplog.text, repr(sandbox), repr(pool), repr(RunloopConfig(api_key=fake.api_key))):
        assert not any(secret in text for secret in secrets)
    for span in spans:
        assert not any(secret in str(value) for value in (span.attributes or {}).values() for secret in secrets)


async def test_open_sandbox_picks_runloop_without_touching_the_network() -> None:
    sandbox = open_sandbox(SandboxConfig(backend="runloop"))
    assert isinstance(sandbox, RunloopSandbox) and sandbox.backend == "runloop"
    await sandbox.aclose()


def test_runloop_settings_come_from_the_environment() -> None:
    env = {
        "RUNLOOP_API_KEY": " rl_env_key ",
        "RUNLOOP_BASE_URL": "http://127.0.0.1:9",
        "SWARM_RUNLOOP_MAX_RETRIES": "4",
        "SWARM_RUNLOOP_BOOT_TIMEOUT_S": "90",
        "SWARM_RUNLOOP_EXEC_GRACE_S": "5",
    }
    config = RunloopConfig.from_env(env)
    assert (config.api_key, config.max_retries, config.boot_timeout_s, config.exec_grace_s) == ("rl_env_key", 4, 90, 5)
    assert "rl_env_key" not in repr(config)
    with pytest.raises(ConfigError, match="SWARM_RUNLOOP_MAX_RETRIES"):
        dataclasses.replace(config, max_retries=-1)


async def test_concurrent_runs_never_exceed_max_devboxes(fake: FakeRunloopAPI, make: Factory) -> None:
    sandbox = make(pool_size=0, max_devboxes=2)
    program = "import time\ntime.sleep(0.1)\nprint('ok')\n"
    results = await asyncio.gather(*(sandbox.run(program, 5.0) for _ in range(4)))
    assert [r.stdout for r in results] == ["ok\n"] * 4
    assert len(fake.calls("create")) == 2


async def test_an_unreachable_api_is_named_in_the_probe_error(make: Factory) -> None:
    sandbox = make(base_url="http://127.0.0.1:9", max_retries=0)
    with pytest.raises(SandboxUnavailableError, match="cannot reach the Runloop API to list devboxes"):
        await sandbox.probe()
    assert sandbox.unavailable_reason is not None
