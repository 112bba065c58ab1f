"""Hostile programs against the local sandbox: each is contained, stopped for a stated reason, and gone after.

The sandbox is the one the service opens (warm pool included) with small limits (``LIMITS``), so
every limit is reached in well under a second and the whole file stays fast.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import socket
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from swarm.v1 import assessor_pb2, assessor_pb2_grpc, common_pb2
from swarm_assessor.config import AssessorConfig
from swarm_assessor.server import create_server
from swarmlib import ExecResult, Sandbox, SandboxConfig, SandboxLimit, open_sandbox

from .conftest import LIMITS, NS_PRELUDE, live_in_namespace, live_named, name_prelude, namespace_of

ROOT_RUN = os.geteuid() == 0
REPO_FILE = Path(__file__).resolve()


def _program(body: str, prelude: str = "") -> str:
    return NS_PRELUDE + prelude + textwrap.dedent(body)


def _assert_nothing_left(result: ExecResult) -> None:
    inode = namespace_of(result.stdout)
    assert live_in_namespace(inode) == [], f"processes of the sandbox outlived run(): {result}"


async def test_fork_bomb_is_held_to_the_process_limit_and_killed_at_the_deadline(sandbox: Sandbox) -> None:
    token = f"bomb{secrets.token_hex(4)}"
    bomb = _program(
        """
        while True:
            try:
                _os.fork()
            except OSError:
                pass
        """,
        name_prelude(token),
    )
    run = asyncio.create_task(sandbox.run(bomb, 2.0))
    most = 0
    while not run.done():
        most = max(most, len(live_named(token)))
        await asyncio.sleep(0.05)
    result = await run
    assert most > 1, "the fork bomb never forked"
    assert most <= LIMITS.max_processes
    assert result.timed_out
    assert result.reason == "timed out after 2s"
    assert result.limit is SandboxLimit.WALL_TIME
    assert live_named(token) == []
    _assert_nothing_left(result)


async def test_fork_loop_is_refused_past_the_process_limit(sandbox: Sandbox) -> None:
    forks = _program(
        """
        import time
        count = 0
        try:
            while True:
                if _os.fork() == 0:
                    time.sleep(60)
                    _os._exit(0)
                count += 1
        except OSError as exc:
            print("refused after", count, exc.errno)
        """
    )
    result = await sandbox.run(forks, 5.0)
    assert result.exit_code == 0, result
    count, errno = result.stdout.split("refused after ")[1].split()
    assert int(count) < LIMITS.max_processes
    assert int(errno) == 11  # EAGAIN: RLIMIT_NPROC
    assert result.limit is SandboxLimit.NONE  # the program caught it and ended normally
    _assert_nothing_left(result)


async def test_memory_bomb_hits_the_address_space_limit(sandbox: Sandbox) -> None:
    hog = _program(
        """
        hoard = []
        while True:
            hoard.append(bytearray(8 * 1024 * 1024))
        """
    )
    result = await sandbox.run(hog, 5.0)
    assert result.exit_code == 1
    assert not result.timed_out
    assert result.reason == f"memory limit of {LIMITS.memory_mb} MB reached (MemoryError)"
    assert result.limit is SandboxLimit.MEMORY
    assert result.stderr.rstrip().endswith("MemoryError")
    _assert_nothing_left(result)


async def test_infinite_loop_is_killed_at_the_deadline(sandbox: Sandbox) -> None:
    result = await sandbox.run(_program("while True:\n    pass\n"), 1.0)
    assert result.timed_out
    assert result.reason == "timed out after 1s"
    assert result.limit is SandboxLimit.WALL_TIME
    assert result.exit_code != 0
    _assert_nothing_left(result)


async def test_sleeping_forever_is_killed_at_the_deadline(sandbox: Sandbox) -> None:
    result = await sandbox.run(_program("import time\ntime.sleep(10**6)\n"), 1.0)
    assert result.timed_out
    assert result.reason == "timed out after 1s"
    assert result.limit is SandboxLimit.WALL_TIME
    _assert_nothing_left(result)


@pytest.mark.parametrize("stream", ["stdout", "stderr"])
async def test_huge_output_is_capped_and_stops_the_program(sandbox: Sandbox, stream: str) -> None:
    flood = _program(f"while True:\n    _sys.{stream}.write('x' * 65536)\n")
    result = await sandbox.run(flood, 5.0)
    assert not result.timed_out
    assert result.reason == f"{stream} exceeded {LIMITS.output_cap_bytes} bytes"
    assert result.limit is SandboxLimit.OUTPUT
    captured = result.stdout if stream == "stdout" else result.stderr
    assert len(captured) <= LIMITS.output_cap_bytes
    assert captured.endswith("x" * 100)
    _assert_nothing_left(result)


async def test_no_network_not_even_the_hosts_loopback(sandbox: Sandbox) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        probe = _program(
            f"""
            import socket
            print("interfaces", [name for _, name in socket.if_nameindex()])
            for host, port in (("127.0.0.1", {port}), ("1.1.1.1", 80), ("8.8.8.8", 53)):
                with socket.socket() as s:
                    s.settimeout(2)
                    try:
                        s.connect((host, port))
                        print(host, "connected")
                    except OSError as exc:
                        print(host, "refused", exc.errno)
            try:
                socket.getaddrinfo("example.com", 80)
                print("dns resolved")
            except OSError:
                print("dns failed")
            """
        )
        result = await sandbox.run(probe, 5.0)
        with pytest.raises(BlockingIOError):
            listener.accept()  # nothing reached the host's listener
    assert result.exit_code == 0, result
    assert "interfaces ['lo']" in result.stdout
    assert "127.0.0.1 refused 111" in result.stdout  # the sandbox's own loopback, where nothing listens
    assert "1.1.1.1 refused 101" in result.stdout  # ENETUNREACH
    assert "8.8.8.8 refused 101" in result.stdout
    assert "dns failed" in result.stdout
    assert "connected" not in result.stdout


async def test_host_secrets_are_out_of_reach(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = f"hunter-{secrets.token_hex(8)}"
    monkeypatch.setenv("SWARM_HOSTILE_SECRET", secret)
    host_file = tmp_path / "secret.txt"
    host_file.write_text(secret)
    prefix = Path(sys.base_prefix)
    snoop = _program(
        f"""
        import json
        tried = {{}}
        for path in ("/etc/shadow", "/etc/passwd", "/root/.bashrc", "/root/.ssh", "/home",
                     {str(host_file)!r}, {str(REPO_FILE)!r}, "/proc/1/environ"):
            try:
                with open(path, "rb") as f:
                    tried[path] = "read " + f.read().decode("latin-1")
            except OSError as exc:
                tried[path] = type(exc).__name__
        seen = []
        for pid in [p for p in _os.listdir("/proc") if p.isdigit()]:
            for what in ("environ", "cmdline"):
                try:
                    with open(f"/proc/{{pid}}/{{what}}", "rb") as f:
                        seen.append(f.read().decode("latin-1"))
                except OSError:
                    pass
        under_root = []
        for top, dirs, files in _os.walk("/root"):
            under_root += [_os.path.join(top, d) for d in dirs] + [_os.path.join(top, f) for f in files]
            if top.count("/") > 4:
                dirs.clear()
        print(json.dumps({{"tried": tried, "env": dict(_os.environ), "proc": seen, "root": under_root}}))
        """
    )
    # A sandbox opened after the secret was set: its warm workers start with the secret around.
    fresh = open_sandbox(replace(LIMITS, output_cap_bytes=1 << 20))
    try:
        await fresh.probe()
        result = await fresh.run(snoop, 5.0)
    finally:
        await fresh.aclose()
    assert result.exit_code == 0, result
    assert secret not in result.stdout + result.stderr
    report = json.loads(result.stdout.splitlines()[-1])
    # /proc/1 is bubblewrap's init, readable only when it shares the program's uid; its environment
    # is bubblewrap's, which the service starts empty (the secret check above covers it).
    readable = [path for path, outcome in report["tried"].items() if outcome.startswith("read")]
    assert readable in ([], ["/proc/1/environ"]), report["tried"]
    assert report["tried"]["/etc/shadow"] == "FileNotFoundError"
    assert set(report["env"]) == {"PATH", "HOME", "LANG", "PWD"}
    # /root holds nothing but the directories leading to the interpreter (when it lives there).
    allowed = {str(p) for p in [prefix, *prefix.parents]}
    assert all(path in allowed or path.startswith(f"{prefix}/") for path in report["root"]), report["root"][:5]


async def test_nothing_outside_tmp_is_writable_and_tmp_is_bounded(sandbox: Sandbox) -> None:
    writer = _program(
        """
        for path in ("/x", "/usr/x", "/box/x", "/box/main.py", "/dev/x", "/root/x", "/proc/sys/kernel/hostname"):
            try:
                with open(path, "w") as f:
                    f.write("x")
                print(path, "written")
            except OSError as exc:
                print(path, "refused", exc.errno)
        try:
            with open("/tmp/one", "wb") as f:
                f.write(b"x" * (4 << 20))
        except OSError as exc:
            print("big file refused", exc.errno)
        written = 0
        try:
            for i in range(10_000):
                with open(f"/tmp/part{i}", "wb") as f:
                    f.write(b"x" * (64 * 1024))
                written += 64 * 1024
        except OSError as exc:
            print("tmp full after", written, exc.errno)
        """
    )
    result = await sandbox.run(writer, 5.0)
    assert result.exit_code == 0, result
    assert " written" not in result.stdout
    for path in ("/x", "/usr/x", "/box/x", "/box/main.py", "/dev/x", "/root/x", "/proc/sys/kernel/hostname"):
        assert f"{path} refused" in result.stdout
    assert "big file refused 27" in result.stdout  # EFBIG: RLIMIT_FSIZE
    full = result.stdout.split("tmp full after ")[1].split()
    assert int(full[1]) == 28  # ENOSPC: the tmpfs size
    assert int(full[0]) <= LIMITS.tmp_size_mb << 20


async def test_signals_cannot_reach_the_host_or_another_sandbox(sandbox: Sandbox) -> None:
    here = os.getpid()
    bystander = sandbox.run(_program("import time\ntime.sleep(1.5)\nprint('bystander done')\n"), 10.0)
    killer = _program(
        f"""
        import signal, time
        time.sleep(0.3)
        for pid in (-1, 1, {here}):
            try:
                _os.kill(pid, signal.SIGKILL)
                print(pid, "sent", flush=True)
            except OSError as exc:
                print(pid, "refused", type(exc).__name__, flush=True)
        _os.killpg(0, signal.SIGKILL)
        """
    )
    calm, killed = await asyncio.gather(bystander, sandbox.run(killer, 10.0))
    assert calm.exit_code == 0 and "bystander done" in calm.stdout, calm
    assert killed.reason.startswith("killed by SIGKILL")
    assert killed.limit is SandboxLimit.KILLED
    assert calm.limit is SandboxLimit.NONE
    assert f"{here} refused ProcessLookupError" in killed.stdout  # the host's pids do not exist in there
    assert "-1 refused" in killed.stdout  # nothing else in the sandbox it may signal
    _assert_nothing_left(killed)


async def test_a_shell_runs_inside_the_same_box(sandbox: Sandbox) -> None:
    shell = _program(
        """
        import subprocess
        done = subprocess.run(["/bin/sh", "-c", "id -u; ls /; cat /etc/shadow"], capture_output=True, text=True)
        print(done.stdout)
        print(done.stderr)
        """
    )
    result = await sandbox.run(shell, 5.0)
    assert result.exit_code == 0, result
    lines = result.stdout.splitlines()[1:]
    if ROOT_RUN:
        assert lines[0] != "0"  # the shell is the program's unprivileged uid, not root
    assert "box" in lines and "etc" not in lines and "home" not in lines
    assert "/etc/shadow: No such file" in result.stdout
    _assert_nothing_left(result)


async def test_background_and_daemonised_processes_do_not_survive(sandbox: Sandbox) -> None:
    leaver = _program(
        """
        import subprocess, signal, time
        subprocess.Popen(["/bin/sh", "-c", "trap '' HUP TERM; sleep 60"], start_new_session=True)
        if _os.fork() == 0:  # the classic double fork
            _os.setsid()
            if _os.fork() == 0:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                signal.signal(signal.SIGHUP, signal.SIG_IGN)
                time.sleep(60)
            _os._exit(0)
        time.sleep(0.2)
        print("left", len([p for p in _os.listdir("/proc") if p.isdigit()]), "processes behind")
        """
    )
    result = await sandbox.run(leaver, 5.0)
    assert result.exit_code == 0, result
    assert int(result.stdout.split("left ")[1].split()[0]) >= 4  # init, main, sh/sleep, daemon
    _assert_nothing_left(result)


async def test_deep_recursion_is_an_error_or_a_reported_crash(sandbox: Sandbox) -> None:
    plain = _program("def f(n):\n    return f(n + 1)\nf(0)\n")
    result = await sandbox.run(plain, 5.0)
    assert result.exit_code == 1
    assert "RecursionError" in result.stderr
    assert result.limit is SandboxLimit.NONE  # an ordinary error, not a limit
    # With the limit lifted, C-level recursion overflows the stack: a crash, reported as such.
    crash = _program(
        """
        import json
        _sys.setrecursionlimit(10**8)
        nested = []
        for _ in range(200_000):
            nested = [nested]
        json.dumps(nested)
        """
    )
    result = await sandbox.run(crash, 5.0)
    assert not result.timed_out
    assert result.reason.startswith("killed by SIGSEGV"), result
    assert result.limit is SandboxLimit.KILLED
    _assert_nothing_left(result)


async def test_another_executions_hidden_tests_are_invisible(sandbox: Sandbox) -> None:
    hidden = f"assert solve() == {secrets.token_hex(8)!r}\n"
    owner = _program(
        """
        import time
        print("own", open("/box/hidden_tests.py").read() != "")
        time.sleep(1.0)
        """
    )
    spy = _program(
        """
        import time
        time.sleep(0.3)
        found = []
        for top, dirs, files in _os.walk("/"):
            if top.startswith(("/proc", "/usr", "/dev", _sys.base_prefix)):
                dirs.clear()
                continue
            for name in files:
                path = _os.path.join(top, name)
                try:
                    with open(path, errors="replace") as f:
                        found.append(path + ":" + f.read(4096))
                except OSError:
                    pass
        for pid in [p for p in _os.listdir("/proc") if p.isdigit()]:
            try:
                found += _os.listdir(f"/proc/{pid}/root/box")
            except OSError:
                pass
        print("\\n".join(found))
        """
    )
    mine, theirs = await asyncio.gather(
        sandbox.run(owner, 10.0, {"hidden_tests.py": hidden}), sandbox.run(spy, 10.0, {"decoy.txt": "mine"})
    )
    assert "own True" in mine.stdout, mine
    assert theirs.exit_code == 0, theirs
    assert "/box/decoy.txt:mine" in theirs.stdout
    assert "hidden_tests" not in theirs.stdout
    assert hidden.strip() not in theirs.stdout


async def test_no_way_back_to_privileges_through_new_namespaces(sandbox: Sandbox) -> None:
    # In a user namespace of its own a program would be root again and could, for one, mount a
    # tmpfs that no limit of the sandbox accounts for.
    escape = _program(
        """
        import ctypes, subprocess
        libc = ctypes.CDLL(None, use_errno=True)
        print("unshare", libc.unshare(0x10000000 | 0x00020000), ctypes.get_errno())
        print("clone", libc.syscall(56 if _os.uname().machine == "x86_64" else 220, 0x10000000 | 17, 0, 0, 0, 0),
              ctypes.get_errno())
        print("mount", libc.mount(b"tmpfs", b"/tmp", b"tmpfs", 0, None), ctypes.get_errno())
        print("unshare(1)", subprocess.run(["unshare", "-U", "true"], capture_output=True).returncode)
        """
    )
    result = await sandbox.run(escape, 5.0)
    assert result.exit_code == 0, result
    assert "unshare -1 1\n" in result.stdout  # EPERM
    assert "clone -1 1\n" in result.stdout
    assert "mount -1 1\n" in result.stdout
    assert "unshare(1) 0" not in result.stdout
    _assert_nothing_left(result)


async def test_limits_and_privileges_inside(sandbox: Sandbox) -> None:
    timeout = 3.0
    probe = _program(
        """
        import resource
        used = resource.getrusage(resource.RUSAGE_SELF)
        print("cpu", *resource.getrlimit(resource.RLIMIT_CPU), used.ru_utime + used.ru_stime)
        for name in ("AS", "NPROC", "FSIZE", "NOFILE", "CORE"):
            print(name, *resource.getrlimit(getattr(resource, "RLIMIT_" + name)))
        status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())
        for field in ("Uid", "CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh", "NoNewPrivs"):
            print(field, status[field].split()[0])
        """
    )
    result = await sandbox.run(probe, timeout)
    assert result.exit_code == 0, result
    seen = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()}
    soft, hard, used = int(seen["cpu"][0]), int(seen["cpu"][1]), float(seen["cpu"][2])
    # CPU time is allowed from the program's start: the worker's start-up is not charged to it.
    assert math.ceil(timeout) + 1 <= soft <= math.ceil(used) + math.ceil(timeout) + 1
    assert hard == soft + 1
    assert seen["AS"] == [str(LIMITS.memory_mb << 20)] * 2
    assert seen["NPROC"] == [str(LIMITS.max_processes)] * 2
    assert seen["FSIZE"] == [str(LIMITS.output_cap_bytes * 16)] * 2
    assert seen["CORE"] == ["0", "0"]
    for field in ("CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh"):
        assert int(seen[field][0], 16) == 0, field
    assert seen["NoNewPrivs"] == ["1"]
    if ROOT_RUN:
        assert seen["Uid"] != ["0"]


async def test_cpu_time_limit_kills_with_sigxcpu(sandbox: Sandbox) -> None:
    # The program lowers its own soft limit to 1 s of CPU, so the kernel's SIGXCPU is reached fast.
    burner = _program(
        """
        import resource
        used = resource.getrusage(resource.RUSAGE_SELF)
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        resource.setrlimit(resource.RLIMIT_CPU, (int(used.ru_utime + used.ru_stime) + 1, hard))
        while True:
            pass
        """
    )
    result = await sandbox.run(burner, 10.0)
    assert not result.timed_out, result
    assert result.reason == "killed by SIGXCPU (CPU-time limit)"
    assert result.limit is SandboxLimit.CPU_TIME
    _assert_nothing_left(result)


BIG_FILE = "open('/tmp/big', 'wb').write(b'x' * (1 << 20))"  # past the file-size limit (16 x the output cap)
FULL_TMP = "for i in range(10_000):\n    open(f'/tmp/part{i}', 'wb').write(b'x' * (64 << 10))"
FORKS = "import time\nwhile True:\n    if _os.fork() == 0:\n        time.sleep(60)"
THREADS = (
    "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()"
)


@pytest.mark.parametrize(
    ("body", "limit", "reason"),
    [
        (BIG_FILE, SandboxLimit.FILE_SIZE, "file size limit reached (EFBIG)"),
        (FULL_TMP, SandboxLimit.TMP_SPACE, f"/tmp is full ({LIMITS.tmp_size_mb} MB)"),
        (FORKS, SandboxLimit.PROCESSES, f"process limit of {LIMITS.max_processes} reached (EAGAIN)"),
        (THREADS, SandboxLimit.PROCESSES, f"process limit of {LIMITS.max_processes} reached (no new thread)"),
    ],
)
async def test_a_limit_that_refuses_a_request_is_named_from_the_programs_last_error(
    sandbox: Sandbox, body: str, limit: SandboxLimit, reason: str
) -> None:
    result = await sandbox.run(_program(body), 5.0)
    assert result.exit_code == 1, result
    assert (result.reason, result.limit) == (reason, limit)
    _assert_nothing_left(result)


async def test_forged_setup_failure_is_the_programs_own_exit(sandbox: Sandbox) -> None:
    liar = _program("_sys.stderr.write('swarm-sandbox setup failed: fake\\n')\nraise SystemExit(125)\n")
    result = await sandbox.run(liar, 5.0)
    assert result.exit_code == 125  # reported as the program's failure; the sandbox stays available
    assert result.limit is SandboxLimit.NONE
    assert sandbox.unavailable_reason is None
    assert (await sandbox.run("print('still fine')\n", 5.0)).stdout == "still fine\n"


FIB_TASK = '''def fib(n: int) -> int:
    """Return the n-th Fibonacci number.

    >>> fib(10)
    55
    """
'''
GOOD_FIB = "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n"
SPIN = "while True:\n    pass\n"
BOMB = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"


async def test_assessor_serves_others_while_a_hostile_candidate_runs() -> None:
    config = AssessorConfig(
        address="127.0.0.1:0",
        timeout_s=5.0,
        max_timeout_s=20.0,
        max_candidates=4,
        max_concurrency=3,  # two hostile candidates and the normal one run side by side
        mutated_probes=0,
        sandbox=SandboxConfig(memory_mb=128, max_processes=16, max_slots=3),
    )
    server, port = await create_server(config)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = assessor_pb2_grpc.AssessorServiceStub(channel)
            hostile = asyncio.ensure_future(
                stub.Assess(
                    assessor_pb2.AssessRequest(
                        run_id="hostile",
                        task=FIB_TASK,
                        candidates=[
                            common_pb2.CandidateCode(id="spin", code=SPIN),
                            common_pb2.CandidateCode(id="bomb", code=BOMB),
                        ],
                        timeout_seconds=8.0,
                    )
                )
            )
            await asyncio.sleep(0.5)  # let the hostile candidates start
            normal: assessor_pb2.AssessResponse = await stub.Assess(
                assessor_pb2.AssessRequest(
                    run_id="normal", task=FIB_TASK, candidates=[common_pb2.CandidateCode(id="good", code=GOOD_FIB)]
                )
            )
            assert not hostile.done(), "the normal request should have completed while the hostile one ran"
            (good,) = normal.assessments
            assert good.error == ""
            assert good.scores.correctness == 1.0
            bad: assessor_pb2.AssessResponse = await hostile
            assert all("timed out" in a.error for a in bad.assessments), [a.error for a in bad.assessments]
    finally:
        await server.stop(0)
