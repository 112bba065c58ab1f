"""Run one untrusted Python program inside bubblewrap, with resource limits and a wall clock.

There is deliberately no unsandboxed fallback: when bubblewrap is missing or cannot create its
namespaces, every execution raises ``SandboxUnavailableError`` and the client learns why.

What a program gets (each point is proven by ``tests/sandbox/test_hostile.py``):

* its own network, pid, ipc and uts namespaces: no route anywhere, not even to the host's
  loopback, and no host process to see or signal;
* a read-only view of ``/usr`` and of the interpreter's prefix and nothing else of the host (no
  ``/etc``, ``/home``, ``/root`` beyond the interpreter, no service environment: bubblewrap itself
  starts with an empty one);
* ``/box`` (read-only) holding ``main.py`` and the caller's files, and ``/tmp``, a private tmpfs
  bounded to ``tmp_size_mb`` (mounted inside the sandbox, as bubblewrap 0.8 has no ``--size``);
* limits on CPU time, address space, processes, file size and open files, set just before the
  program starts; no capabilities, ``no_new_privs``, and a seccomp filter that refuses new
  namespaces (in a user namespace of its own a program would be root again);
* a wall clock: at the deadline, or when stdout/stderr pass ``output_cap_bytes``, the pid
  namespace is killed, so background and daemonised children die too, and ``run`` returns only
  once none of the sandbox's processes is left.

When the service runs as root, a user namespace would map the sandbox's root to the host's root,
and the kernel never applies RLIMIT_NPROC to (host) root, so a fork bomb would go unbounded.
In that case the sandbox skips the user namespace and drops to a dedicated unprivileged uid per
sandbox, which makes the process limit real and per execution. Without root, bubblewrap uses a
user namespace and RLIMIT_NPROC counts all processes of the service's user (a weaker bound).

Not bounded here: the memory of a sandbox as a whole. RLIMIT_AS is per process, so a program
may hold up to ``max_processes`` x ``memory_mb`` (plus ``tmp_size_mb`` of /tmp); only the
container's memory limit caps the sum. A per-sandbox cgroup would, where the service may create
one (not in the unprivileged pod).

Warm pool: starting bubblewrap and the interpreter costs tens of milliseconds, more than the
programs the assessor runs. So ``pool_size`` sandboxes (``warm_workers``, or ``max_slots`` when
that is 0: one spare per slot, so every slot can start its next program without waiting) are
started ahead, each waiting for its program on stdin with its set-up done. Each runs exactly one
program and is then replaced, so executions are as isolated from each other as cold ones.
"""

from __future__ import annotations

import asyncio
import logging
import marshal
import os
import signal
import site
import sys
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from . import _sandbox_local_launcher as launcher
from ._errors import SandboxUnavailableError
from ._sandbox import ExecResult, SandboxConfig
from ._sandbox_local_worker import Worker, encode_request

log = logging.getLogger(__name__)

BACKEND = "bubblewrap"
# First uid of the pool used for root-run sandboxes; far from any distro's allocated ranges.
_UID_BASE = 61000
_READ_CHUNK = 65536
_OPEN_FILES = 512
# bubblewrap's own environment: the sandbox's init is a bubblewrap process, so nothing of the
# service's environment may reach it either.
_BWRAP_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_PROBE_TIMEOUT_S = 10.0
# A /dev of the harmless character devices only. Not bubblewrap's --dev: with it, a user
# namespace's tmpfs mount on /tmp is refused (EPERM), and it brings ptys and an unbounded /dev/shm.
_DEV = [
    "--perms",
    "0755",
    "--tmpfs",
    "/dev",
    *(
        arg
        for node in ("null", "zero", "full", "random", "urandom")
        for arg in ("--dev-bind", f"/dev/{node}", f"/dev/{node}")
    ),
    *(
        arg
        for link, target in (
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
            # POSIX shared memory and semaphores (multiprocessing's locks) live in the bounded /tmp.
            ("shm", "/tmp"),
        )
        for arg in ("--symlink", target, f"/dev/{link}")
    ),
]


def base_python() -> str:
    """The real interpreter behind the venv: the venv's own files are not bound into the box."""
    candidate = getattr(sys, "_base_executable", "") or ""
    if candidate and Path(candidate).is_file() and _inside(candidate, sys.base_prefix):
        return candidate
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(Path(sys.base_prefix) / "bin" / version)


def _inside(path: str, prefix: str) -> bool:
    try:
        Path(path).resolve().relative_to(Path(prefix).resolve())
    except ValueError:
        return False
    return True


def _site_dirs(prefix: str) -> list[str]:
    """The interpreter's site-packages that exist inside the box.

    The program runs with ``-S``, so these are put on ``sys.path`` by the launcher, but the
    ``.pth`` start-up hooks in them are not run: they are the host's, and on a host whose hook
    imports a certificate bundle they alone cost more than the rest of an execution.
    """
    return [
        p for p in site.getsitepackages([prefix]) if Path(p).is_dir() and (_inside(p, prefix) or p.startswith("/usr/"))
    ]


# Compiling the launcher costs more CPU than starting the interpreter does on a slow host, so it is
# compiled once here and handed over marshalled (the sandbox runs this same interpreter version).
_BOOTSTRAP = "import marshal, sys\nexec(marshal.loads(bytes.fromhex(sys.argv.pop(1))))\n"


def _launcher_code() -> str:
    source = Path(launcher.__file__).read_text(encoding="utf-8")
    return marshal.dumps(compile(source, "<swarm-sandbox-launcher>", "exec", dont_inherit=True)).hex()


def default_pool_size(config: SandboxConfig) -> int:
    """``warm_workers``, or one warm sandbox per slot when it is 0."""
    return config.warm_workers or config.max_slots


class LocalSandbox:
    """Executes programs in bubblewrap with at most ``max_slots`` running at once.

    ``pool_size`` overrides the number of warm sandboxes (0 runs every program cold); it exists
    for the overhead benchmark and tests, the service takes it from the config.
    """

    def __init__(self, config: SandboxConfig, pool_size: int | None = None) -> None:
        self._config = config
        self._pool_size = default_pool_size(config) if pool_size is None else pool_size
        self._python = base_python()
        self._prefix = sys.base_prefix
        self._site_dirs = os.pathsep.join(_site_dirs(self._prefix))
        self._launcher = _launcher_code()
        self._drop_privileges = os.geteuid() == 0
        self._slots = asyncio.Semaphore(config.max_slots)
        # Each live sandbox (running or warm) holds its own uid, so RLIMIT_NPROC (counted per
        # uid) is per execution; the uid is free again only once the sandbox's last process is.
        self._uids: asyncio.Queue[int] = asyncio.Queue()
        for index in range(config.max_slots + self._pool_size):
            self._uids.put_nowait(_UID_BASE + index)
        self._pool: deque[asyncio.Task[Worker]] = deque()
        self._live: set[Worker] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._warming = False
        self._closed = False
        self._unavailable: str | None = None

    @property
    def backend(self) -> str:
        return BACKEND

    @property
    def unavailable_reason(self) -> str | None:
        """Why the last probe failed, or None when the sandbox works (or was not probed)."""
        return self._unavailable

    async def probe(self) -> None:
        """Run an empty program once so a broken host is reported at start-up, not mid-run."""
        self._unavailable = None
        if not os.access(self._config.bwrap_path, os.X_OK):
            self._fail(f"bubblewrap not found at {self._config.bwrap_path}; install it (apt-get install bubblewrap)")
        try:
            result = await self._execute(await self._spawn(), "pass\n", {}, _PROBE_TIMEOUT_S)
        except SandboxUnavailableError as exc:
            self._fail(f"bubblewrap cannot start a sandbox on this host: {exc}")
        if result.exit_code != 0:
            detail = result.stderr.strip() or result.reason or f"exit code {result.exit_code}"
            self._fail(f"bubblewrap cannot start a sandbox on this host: {detail}")
        self._warming = True
        self._refill()

    def _fail(self, message: str) -> None:
        self._unavailable = message
        raise SandboxUnavailableError(message)

    async def run(self, program: str, timeout_s: float, files: Mapping[str, str] | None = None) -> ExecResult:
        """Execute ``program`` as ``/box/main.py``; never runs it outside the sandbox."""
        if self._closed:
            raise SandboxUnavailableError("the sandbox has been closed")
        if self._unavailable is not None:
            raise SandboxUnavailableError(self._unavailable)
        files = {_plain_name(name): text for name, text in (files or {}).items()}
        async with self._slots:
            worker = await self._take()
            self._refill()
            return await self._execute(worker, program, files, timeout_s)

    async def aclose(self) -> None:
        """Kill warm and running sandboxes and wait until none of their processes is left."""
        self._closed = True
        self._warming = False
        pending = list(self._pool)
        self._pool.clear()
        for task in pending:
            if not task.done():
                task.cancel()
        for outcome in await asyncio.gather(*pending, return_exceptions=True):
            if isinstance(outcome, Worker):
                self._live.add(outcome)
        workers = list(self._live)
        for worker in workers:
            worker.kill()
        await asyncio.gather(*(self._reap(worker) for worker in workers), *self._background, return_exceptions=True)

    async def _take(self) -> Worker:
        """The oldest warm sandbox (most likely done with its set-up), or a cold one."""
        while self._pool:
            task = self._pool.popleft()
            try:
                worker = await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.cancelled():
                    self._pool.appendleft(task)
                raise
            if worker.alive:
                return worker
            log.warning("a warm sandbox died before it was used (exit %s); starting another", worker.proc.returncode)
            self._live.add(worker)
            await self._reap(worker)
        return await self._spawn()

    def _refill(self) -> None:
        while self._warming and not self._closed and len(self._pool) < self._pool_size:
            self._pool.append(asyncio.create_task(self._spawn()))

    async def _spawn(self) -> Worker:
        uid = await self._uids.get()
        if self._closed:
            self._uids.put_nowait(uid)
            raise SandboxUnavailableError("the sandbox has been closed")
        try:
            worker = await Worker.start(lambda info, status: self._argv(uid, info, status), uid, _BWRAP_ENV)
        except OSError as exc:
            self._uids.put_nowait(uid)
            raise SandboxUnavailableError(f"cannot start bubblewrap ({self._config.bwrap_path}): {exc}") from exc
        except BaseException:
            self._uids.put_nowait(uid)
            raise
        return worker

    async def _reap(self, worker: Worker) -> None:
        """Wait until the sandbox is gone, then free its uid (exactly once per worker)."""
        try:
            await worker.wait()
        finally:
            if worker in self._live:
                self._live.discard(worker)
                self._uids.put_nowait(worker.uid)

    def _argv(self, uid: int, info_fd: int, status_fd: int) -> list[str]:
        cfg = self._config
        if self._drop_privileges:
            unshare = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
            caps = ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        else:
            unshare = ["--unshare-all"]
            caps = []
            uid = -1
        mounts = ["--ro-bind", "/usr", "/usr"]
        for link in ("bin", "lib", "lib64", "sbin"):
            host = Path("/") / link
            if host.is_symlink():
                mounts += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                mounts += ["--ro-bind", str(host), str(host)]
        if not _inside(self._prefix, "/usr"):
            for parent in reversed(Path(self._prefix).parents):
                if str(parent) != "/":
                    mounts += ["--perms", "0755", "--dir", str(parent)]
            mounts += ["--ro-bind", self._prefix, self._prefix]
        mounts += ["--dir", "/tmp", "--dir", "/box", "--proc", "/proc", *_DEV]
        # Nothing outside /tmp is writable: not the root bubblewrap builds, not its /dev.
        mounts += ["--remount-ro", "/dev", "--remount-ro", "/"]
        launch = [
            str(uid),
            str(cfg.tmp_size_mb),
            str(cfg.memory_mb),
            str(cfg.max_processes),
            str(cfg.output_cap_bytes * 16),
            str(_OPEN_FILES),
            str(status_fd),
            self._site_dirs,
        ]
        return [
            cfg.bwrap_path,
            *unshare,
            "--die-with-parent",
            "--new-session",
            "--clearenv",
            "--setenv",
            "PATH",
            "/usr/local/bin:/usr/bin:/bin",
            "--setenv",
            "HOME",
            "/tmp",
            "--setenv",
            "LANG",
            "C.UTF-8",
            *mounts,
            "--chdir",
            "/tmp",
            "--info-fd",
            str(info_fd),
            "--cap-drop",
            "ALL",
            # Kept only by the launcher, which mounts /tmp and /box and then drops every one.
            "--cap-add",
            "CAP_SYS_ADMIN",
            "--cap-add",
            "CAP_SETPCAP",
            *caps,
            "--",
            self._python,
            "-I",
            "-S",
            "-B",
            "-c",
            _BOOTSTRAP,
            self._launcher,
            *launch,
        ]

    async def _execute(self, worker: Worker, program: str, files: Mapping[str, str], timeout_s: float) -> ExecResult:
        self._live.add(worker)
        cap = self._config.output_cap_bytes
        overflow: list[str] = []
        out, err = bytearray(), bytearray()

        async def pump(stream: asyncio.StreamReader | None, buf: bytearray, name: str) -> None:
            # Reads to the end even past the cap (discarding), so the pipe never blocks the exit.
            if stream is None:
                return
            while chunk := await stream.read(_READ_CHUNK):
                if len(buf) + len(chunk) > cap:
                    buf.extend(chunk[: cap - len(buf)])
                    if not overflow:
                        overflow.append(name)
                        worker.kill()
                    continue
                buf.extend(chunk)

        started = time.monotonic()
        pumps = [
            asyncio.create_task(pump(worker.proc.stdout, out, "stdout")),
            asyncio.create_task(pump(worker.proc.stderr, err, "stderr")),
        ]
        timed_out = False
        try:
            async with asyncio.timeout(timeout_s):
                await worker.send(encode_request(program, files, timeout_s))
                await asyncio.wait(pumps)
                await worker.proc.wait()
        except TimeoutError:
            timed_out = True
        finally:
            worker.kill()
            await self._finish(worker, pumps)
        duration_ms = (time.monotonic() - started) * 1000.0
        stderr = err.decode("utf-8", "replace")
        if not timed_out and not worker.started_program():
            detail = stderr.strip().splitlines()[-1:] or [f"bubblewrap exited with {worker.proc.returncode}"]
            raise SandboxUnavailableError(f"the sandbox did not start the program: {detail[0][:500]}")
        code = worker.proc.returncode
        return ExecResult(
            exit_code=code,
            timed_out=timed_out,
            reason=_reason(code, timed_out, timeout_s, overflow, stderr, self._config),
            stdout=out.decode("utf-8", "replace"),
            stderr=stderr,
            duration_ms=duration_ms,
        )

    async def _finish(self, worker: Worker, pumps: list[asyncio.Task[None]]) -> None:
        """Drain and reap a killed or finished worker, even if the caller is cancelled meanwhile."""

        async def finish() -> None:
            await asyncio.gather(*pumps, return_exceptions=True)
            await self._reap(worker)

        task = asyncio.create_task(finish())
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.shield(task)


def _plain_name(name: str) -> str:
    """Files live flat in the box: a name with a directory part could write outside it."""
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise ValueError(f"sandbox file name {name!r} must be a plain file name")
    return name


_SIGNAL_HINTS: dict[int, str] = {
    signal.SIGXCPU: " (CPU-time limit)",
    signal.SIGKILL: " (CPU-time hard limit, the kernel's OOM killer, or the program itself)",
    signal.SIGSEGV: " (crashed; a stack overflow from deep recursion?)",
}
# The last stderr line of a program that died of a sandbox limit, and how to say which.
_LIMIT_ERRORS = (
    ("MemoryError", "memory limit of {memory_mb} MB reached (MemoryError)"),
    ("[Errno 27]", "file size limit reached (EFBIG)"),
    ("[Errno 28]", "/tmp is full ({tmp_size_mb} MB)"),
    ("[Errno 11] Resource temporarily unavailable", "process limit of {max_processes} reached (EAGAIN)"),
    ("can't start new thread", "process limit of {max_processes} reached (no new thread)"),
)


def _reason(
    code: int | None, timed_out: bool, timeout_s: float, overflow: list[str], stderr: str, cfg: SandboxConfig
) -> str:
    """Why the program stopped, when a limit stopped it; empty for an ordinary exit."""
    if timed_out:
        return f"timed out after {timeout_s:g}s"
    if overflow:
        return f"{overflow[0]} exceeded {cfg.output_cap_bytes} bytes"
    if code is None:
        return "did not finish"
    signum = -code if code < 0 else code - 128 if code > 128 else 0
    if signum > 0:
        try:
            return f"killed by {signal.Signals(signum).name}{_SIGNAL_HINTS.get(signum, '')}"
        except ValueError:
            return f"killed by signal {signum}"
    if code != 0:
        last = stderr.strip().splitlines()[-1:] or [""]
        for marker, text in _LIMIT_ERRORS:
            if marker in last[0]:
                return text.format(
                    memory_mb=cfg.memory_mb, tmp_size_mb=cfg.tmp_size_mb, max_processes=cfg.max_processes
                )
    return ""
