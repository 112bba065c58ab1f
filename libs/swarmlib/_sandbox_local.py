"""Run one untrusted Python program inside bubblewrap, with resource limits and a wall clock.

There is deliberately no unsandboxed fallback: when bubblewrap is missing or cannot create its
namespaces, every execution raises ``SandboxUnavailableError`` and the client learns why.

What the box holds and forbids is its command line's business (``_sandbox_local_box``). Here: a
wall clock; at the deadline, or when stdout/stderr pass ``output_cap_bytes``, the pid namespace
is killed, so background and daemonised children die too, and ``run`` returns only once none of
the sandbox's processes is left; and the reason and the limit of every stop (``_reason``).

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
import os
import signal
import time
from collections import deque
from collections.abc import Mapping

from ._errors import SandboxUnavailableError
from ._sandbox import ExecResult, SandboxConfig, SandboxLimit, plain_files
from ._sandbox_limits import limit_in_stderr, signal_limit
from ._sandbox_local_box import BoxCommand
from ._sandbox_local_worker import Worker, encode_request

log = logging.getLogger(__name__)

BACKEND = "bubblewrap"
# First uid of the pool used for root-run sandboxes; far from any distro's allocated ranges.
_UID_BASE = 61000
_READ_CHUNK = 65536
# bubblewrap's own environment: the sandbox's init is a bubblewrap process, so nothing of the
# service's environment may reach it either.
_BWRAP_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
_PROBE_TIMEOUT_S = 10.0


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
        self._command = BoxCommand.for_host(config)
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
        files = plain_files(files)
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
            worker = await Worker.start(lambda info, status: self._command.argv(uid, info, status), uid, _BWRAP_ENV)
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
        reason, limit = _reason(code, timed_out, timeout_s, overflow, stderr, self._config)
        return ExecResult(
            exit_code=code,
            timed_out=timed_out,
            reason=reason,
            stdout=out.decode("utf-8", "replace"),
            stderr=stderr,
            duration_ms=duration_ms,
            limit=limit,
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


_SIGNAL_HINTS: dict[int, str] = {
    signal.SIGXCPU: " (CPU-time limit)",
    signal.SIGKILL: " (CPU-time hard limit, the kernel's OOM killer, or the program itself)",
    signal.SIGSEGV: " (crashed; a stack overflow from deep recursion?)",
}


def _reason(
    code: int | None, timed_out: bool, timeout_s: float, overflow: list[str], stderr: str, cfg: SandboxConfig
) -> tuple[str, SandboxLimit]:
    """Why the program stopped and which limit stopped it; empty and ``NONE`` for an ordinary exit."""
    if timed_out:
        return f"timed out after {timeout_s:g}s", SandboxLimit.WALL_TIME
    if overflow:
        return f"{overflow[0]} exceeded {cfg.output_cap_bytes} bytes", SandboxLimit.OUTPUT
    if code is None:
        return "did not finish", SandboxLimit.NONE
    signum = -code if code < 0 else code - 128 if code > 128 else 0
    if signum > 0:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            # No signal of that number: more likely an exit status above 128 than a kill.
            return f"killed by signal {signum}", SandboxLimit.NONE
        return f"killed by {name}{_SIGNAL_HINTS.get(signum, '')}", signal_limit(signum)
    limit, wording = limit_in_stderr(code, stderr)
    return wording.format(memory_mb=cfg.memory_mb, tmp_size_mb=cfg.tmp_size_mb, max_processes=cfg.max_processes), limit
