"""The bubblewrap backend's contract: what a program sees, what comes back, cold and warm, and clean shutdown."""

from __future__ import annotations

import asyncio
import os

import pytest

from swarmlib import SandboxConfig, SandboxLimit, SandboxUnavailableError
from swarmlib._sandbox_local import LocalSandbox, default_pool_size

from .conftest import LIMITS, NS_PRELUDE, live_descendants, live_in_namespace, namespace_of


@pytest.fixture(params=[0, 2], ids=["cold", "warm"])
def pool_size(request: pytest.FixtureRequest) -> int:
    size: int = request.param
    return size


async def _opened(pool_size: int, config: SandboxConfig = LIMITS) -> LocalSandbox:
    box = LocalSandbox(config, pool_size=pool_size)
    await box.probe()
    return box


async def test_program_files_and_environment(pool_size: int) -> None:
    box = await _opened(pool_size)
    try:
        program = (
            "import os, sys\n"
            "print(open('/box/data.txt').read(), sorted(os.listdir('/box')), os.getcwd(), sys.argv)\n"
            "print(sorted(os.environ), __name__, __file__)\n"
            "print('oops', file=sys.stderr)\n"
            "raise SystemExit(3)\n"
        )
        result = await box.run(program, 5.0, {"data.txt": "héllo"})
    finally:
        await box.aclose()
    assert result.exit_code == 3
    assert not result.timed_out and result.reason == ""
    assert result.limit is SandboxLimit.NONE
    lines = result.stdout.splitlines()
    assert lines[0] == "héllo ['data.txt', 'main.py'] /tmp ['/box/main.py']"
    assert lines[1] == "['HOME', 'LANG', 'PATH', 'PWD'] __main__ /box/main.py"
    assert result.stderr == "oops\n"
    assert result.duration_ms > 0


async def test_a_crash_shows_only_the_programs_traceback(pool_size: int) -> None:
    box = await _opened(pool_size)
    try:
        crashed = await box.run("def f():\n    return 1 / 0\nf()\n", 5.0)
        syntax = await box.run("def f(:\n", 5.0)
    finally:
        await box.aclose()
    assert crashed.exit_code == 1 and crashed.reason == ""
    assert crashed.limit is SandboxLimit.NONE
    assert crashed.stderr.startswith('Traceback (most recent call last):\n  File "/box/main.py", line 3')
    assert crashed.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    assert syntax.exit_code == 1
    assert "SyntaxError" in syntax.stderr and "/box/main.py" in syntax.stderr


async def test_threads_processes_and_multiprocessing_work(pool_size: int) -> None:
    box = await _opened(pool_size)
    try:
        program = (
            "import multiprocessing, subprocess, threading\n"
            "done = []\n"
            "workers = [threading.Thread(target=done.append, args=(i,)) for i in range(4)]\n"
            "[w.start() for w in workers]\n"
            "[w.join() for w in workers]\n"
            "print(len(done), subprocess.run(['echo', 'child'], capture_output=True, text=True).stdout.strip())\n"
            "with multiprocessing.Pool(2) as pool:\n"
            "    print(sum(pool.map(abs, [-1, -2, -3])))\n"
        )
        result = await box.run(program, 10.0)
    finally:
        await box.aclose()
    assert result.stdout == "4 child\n6\n", result.stderr[-500:]


async def test_bad_file_names_are_refused_before_anything_runs() -> None:
    box = await _opened(0)
    try:
        for name in ("../x", "a/b", "", ".", ".."):
            with pytest.raises(ValueError, match="plain file name"):
                await box.run("pass\n", 5.0, {name: "x"})
    finally:
        await box.aclose()


async def test_a_program_larger_than_a_pipe_buffer_arrives_whole() -> None:
    box = await _opened(1)
    try:
        blob = "x" * (1 << 20)
        result = await box.run(f"data = {blob!r}\nprint(len(data), len(open('/box/f').read()))\n", 10.0, {"f": blob})
    finally:
        await box.aclose()
    assert result.stdout == f"{1 << 20} {1 << 20}\n", result.stderr[-300:]


async def test_each_execution_starts_from_a_clean_tmp_and_a_fresh_sandbox() -> None:
    box = await _opened(2)
    try:
        results = [
            await box.run(NS_PRELUDE + "import os\nprint(os.listdir('/tmp'))\nopen('/tmp/left', 'w').write('x')\n", 5.0)
            for _ in range(4)
        ]
    finally:
        await box.aclose()
    assert all(r.exit_code == 0 and "[]" in r.stdout for r in results), results
    assert len({namespace_of(r.stdout) for r in results}) == 4  # one sandbox per execution, never reused


async def test_timeout_before_the_sandbox_is_even_up_is_a_timeout() -> None:
    box = await _opened(0)
    try:
        result = await box.run("pass\n", 0.001)
    finally:
        await box.aclose()
    assert result.timed_out
    assert result.reason == "timed out after 0.001s"
    assert result.limit is SandboxLimit.WALL_TIME


async def test_a_cancelled_run_leaves_nothing_and_the_sandbox_still_works(pool_size: int) -> None:
    box = await _opened(pool_size)
    try:
        before = live_descendants(os.getpid())
        program = NS_PRELUDE + "import time\nwhile True:\n    time.sleep(1)\n"
        run = asyncio.create_task(box.run(program, 30.0))
        await asyncio.sleep(1.0)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await asyncio.sleep(0)  # let the shielded clean-up finish its last step
        result = await box.run("print('ok')\n", 5.0)
        assert result.stdout == "ok\n"
        if pool_size == 0:
            assert live_descendants(os.getpid()) <= before
    finally:
        await box.aclose()


async def test_aclose_kills_warm_workers_and_refuses_later_runs() -> None:
    before = live_descendants(os.getpid())
    box = await _opened(3)
    await box.run("pass\n", 5.0)
    await asyncio.sleep(0.2)
    assert len(live_descendants(os.getpid()) - before) >= 3  # the warm workers
    sleeper = asyncio.create_task(box.run(NS_PRELUDE + "import time\ntime.sleep(30)\n", 60.0))
    await asyncio.sleep(0.5)
    await box.aclose()
    assert live_descendants(os.getpid()) <= before
    result = await sleeper  # a run in flight is killed, and says so
    assert result.reason.startswith("killed by SIGKILL")
    assert result.limit is SandboxLimit.KILLED
    assert live_in_namespace(namespace_of(result.stdout)) == []
    with pytest.raises(SandboxUnavailableError, match="closed"):
        await box.run("pass\n", 5.0)


async def test_a_host_where_the_sandbox_cannot_start_is_unavailable() -> None:
    missing = LocalSandbox(SandboxConfig(bwrap_path="/nonexistent/bwrap"))
    with pytest.raises(SandboxUnavailableError, match="bubblewrap not found at /nonexistent/bwrap"):
        await missing.probe()
    broken = LocalSandbox(SandboxConfig(bwrap_path="/bin/false"), pool_size=0)
    with pytest.raises(SandboxUnavailableError, match="did not start the program"):
        await broken.probe()
    assert broken.unavailable_reason is not None
    with pytest.raises(SandboxUnavailableError):
        await broken.run("pass\n", 5.0)
    await missing.aclose()
    await broken.aclose()


def test_the_warm_pool_defaults_to_one_spare_per_slot() -> None:
    assert default_pool_size(SandboxConfig(max_slots=3)) == 3
    assert default_pool_size(SandboxConfig(max_slots=3, warm_workers=5)) == 5
