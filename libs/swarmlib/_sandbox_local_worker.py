"""One bubblewrap sandbox process that runs exactly one program: how it is started, fed, killed and reaped.

A worker is started before its program is known (that is what makes the warm pool warm) and the
program arrives later on its stdin; see ``_sandbox_local_launcher`` for what happens inside. Two
extra pipes tell the service what it cannot learn from bubblewrap's exit status:

* bubblewrap's ``--info-fd`` names the sandbox's pid-namespace init (bubblewrap's own child).
  The worker holds a pidfd on it. Killing the init kills every process of the sandbox, daemonised
  or not, because the kernel tears a pid namespace down with its init, and the init is reported
  as exited only once all the namespace's processes are gone. bubblewrap itself exits as soon as
  the program does, *before* that teardown, so its exit proves nothing; ``wait`` waits for the
  init too.
* the launcher's status pipe says whether the program was started at all, which separates a
  broken sandbox from a program that failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections.abc import Callable, Mapping

from ._sandbox_local_launcher import STARTED

_CHILD_PID = re.compile(rb'"child-pid"\s*:\s*(\d+)')
_PID_NS = re.compile(rb'"pid-namespace"\s*:\s*(\d+)')


def encode_request(program: str, files: Mapping[str, str], timeout_s: float) -> bytes:
    """The launcher's request: header, then each file as ``<name bytes> <data bytes>`` and the bytes."""
    entries = {**files, "main.py": program}
    parts = [f"{timeout_s!r} {len(entries)}\n".encode()]
    for name, text in entries.items():
        raw_name, data = name.encode("utf-8"), text.encode("utf-8", "surrogatepass")
        parts += [f"{len(raw_name)} {len(data)}\n".encode(), raw_name, data]
    return b"".join(parts)


def _read_ready(fd: int) -> tuple[bytes, bool]:
    """What is in the pipe now, without waiting, and whether the writer has closed it."""
    chunks = []
    try:
        while chunk := os.read(fd, 4096):
            chunks.append(chunk)
    except BlockingIOError:
        return b"".join(chunks), False
    return b"".join(chunks), True


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


class Worker:
    """A started sandbox; ``uid`` is the slot uid it will drop to (or -1 when it keeps the caller's)."""

    def __init__(self, proc: asyncio.subprocess.Process, uid: int, status_fd: int) -> None:
        self.proc = proc
        self.uid = uid
        self._status_fd = status_fd
        self._status = b""
        self._init_fd: int | None = None
        self._waiting: asyncio.Future[int] | None = None

    @classmethod
    async def start(cls, argv: Callable[[int, int], list[str]], uid: int, env: Mapping[str, str]) -> Worker:
        """Start bubblewrap with ``argv(info_fd, status_fd)`` and wait until its namespace exists."""
        info_r, info_w = os.pipe()
        status_r, status_w = os.pipe()
        for fd in (info_r, status_r):
            os.set_blocking(fd, False)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv(info_w, status_w),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(info_w, status_w),
                start_new_session=True,
                env=dict(env),
            )
        except BaseException:
            os.close(status_r)
            raise
        finally:
            os.close(info_w)
            os.close(status_w)
        worker = cls(proc, uid, status_r)
        try:
            await worker._hold_init(info_r)
        except BaseException:
            worker.kill()
            raise
        finally:
            os.close(info_r)
        return worker

    async def _hold_init(self, info_fd: int) -> None:
        """Read bubblewrap's info (written right after it forks the init) and take a pidfd on the init."""
        info = b""
        while True:
            chunk, closed = _read_ready(info_fd)
            info += chunk
            if b"}" in info or closed:
                break
            await _readable(info_fd)
        pid, namespace = _CHILD_PID.search(info), _PID_NS.search(info)
        if pid is None or namespace is None:
            return  # bubblewrap failed before forking; its exit status and stderr say why
        try:
            pidfd = os.pidfd_open(int(pid.group(1)))
        except ProcessLookupError:
            return  # the init is gone already, and its namespace with it
        try:
            # The pid is bubblewrap's unreaped child, but make sure: a reused pid would live in
            # another pid namespace.
            same = os.stat(f"/proc/{int(pid.group(1))}/ns/pid").st_ino == int(namespace.group(1))
        except OSError:
            same = False
        if same:
            self._init_fd = pidfd
        else:
            os.close(pidfd)

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    def started_program(self) -> bool:
        """Whether the launcher got as far as starting the program (once the worker is done)."""
        if self._status_fd >= 0:
            chunk, _ = _read_ready(self._status_fd)
            self._status += chunk
        return STARTED in self._status

    def kill(self) -> None:
        """Kill the whole sandbox now; ``wait`` returns once nothing of it is left."""
        if self._init_fd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(self._init_fd, signal.SIGKILL)
        if self.alive:
            # bubblewrap too (it would follow its init anyway): before the namespace exists this
            # is what stops the set-up, and --die-with-parent takes a half-made sandbox down.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    async def send(self, request: bytes) -> None:
        """Hand the worker its one program; a worker that died meanwhile shows in its exit status."""
        stdin = self.proc.stdin
        if stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            stdin.write(request)
            await stdin.drain()
        stdin.close()

    async def wait(self) -> int:
        """Wait until bubblewrap has exited and the sandbox's init, so every process of it, is gone.

        Any number of callers may wait (a run and ``aclose`` can both be); the waiting itself
        happens once, and goes on even if every caller is cancelled.
        """
        if self._waiting is None:
            self._waiting = asyncio.ensure_future(self._wait())
        return await asyncio.shield(self._waiting)

    async def _wait(self) -> int:
        code = await self.proc.wait()
        if self._init_fd is not None:
            await _readable(self._init_fd)
            # The init outlives bubblewrap and is re-parented to the nearest reaper: this process
            # when it is a container's pid 1, which would otherwise collect zombies. Reap it then.
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PIDFD, self._init_fd, os.WEXITED | os.WNOHANG)  # noqa: ASYNC222 (WNOHANG)
            os.close(self._init_fd)
            self._init_fd = None
        if self._status_fd >= 0:
            self.started_program()
            os.close(self._status_fd)
            self._status_fd = -1
        return code
