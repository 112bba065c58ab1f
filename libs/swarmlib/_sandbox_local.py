"""Run one untrusted Python program inside bubblewrap, with resource limits and a wall clock.

There is deliberately no unsandboxed fallback: when bubblewrap is missing or cannot create its
namespaces, every execution raises ``SandboxUnavailableError`` and the client learns why.

When the service runs as root, a user namespace would map the sandbox's root to the host's root,
and the kernel never applies RLIMIT_NPROC to (host) root, so a fork bomb would go unbounded.
In that case the sandbox skips the user namespace and drops, through ``setpriv``, to a dedicated
unprivileged uid per concurrency slot, which makes the process limit real and per execution.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from ._errors import SandboxUnavailableError
from ._sandbox import ExecResult, SandboxConfig

log = logging.getLogger(__name__)

BACKEND = "bubblewrap"
# First uid of the pool used for root-run sandboxes; far from any distro's allocated ranges.
_UID_BASE = 61000
_READ_CHUNK = 4096


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


class LocalSandbox:
    """Executes programs in bubblewrap with at most ``max_slots`` running at once."""

    def __init__(self, config: SandboxConfig) -> None:
        self._config = config
        self._python = base_python()
        self._prefix = sys.base_prefix
        self._drop_privileges = os.geteuid() == 0
        self._prlimit = shutil.which("prlimit") or "/usr/bin/prlimit"
        self._setpriv = shutil.which("setpriv") or "/usr/bin/setpriv"
        # Each slot carries its own uid so RLIMIT_NPROC (counted per uid) is per execution.
        self._slots: asyncio.Queue[int] = asyncio.Queue()
        for index in range(config.max_slots):
            self._slots.put_nowait(_UID_BASE + index)
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
        for tool, purpose in ((self._config.bwrap_path, "bubblewrap"), (self._prlimit, "prlimit (util-linux)")):
            if not os.access(tool, os.X_OK):
                self._fail(f"{purpose} not found at {tool}; install it (apt-get install bubblewrap util-linux)")
        if self._drop_privileges and not os.access(self._setpriv, os.X_OK):
            self._fail(f"setpriv (util-linux) not found at {self._setpriv}; it is needed when running as root")
        result = await self._execute("pass\n", timeout_s=10.0)
        if result.exit_code != 0:
            detail = result.stderr.strip() or result.reason or f"exit code {result.exit_code}"
            self._fail(f"bubblewrap cannot start a sandbox on this host: {detail}")

    def _fail(self, message: str) -> None:
        self._unavailable = message
        raise SandboxUnavailableError(message)

    async def run(self, program: str, timeout_s: float, files: Mapping[str, str] | None = None) -> ExecResult:
        """Execute ``program`` as ``python -I /box/main.py``; never runs it outside the sandbox."""
        if self._unavailable is not None:
            raise SandboxUnavailableError(self._unavailable)
        return await self._execute(program, timeout_s, files or {})

    async def aclose(self) -> None:
        """Nothing outlives an execution on this backend."""

    async def _execute(self, program: str, timeout_s: float, files: Mapping[str, str] | None = None) -> ExecResult:
        uid = await self._slots.get()
        try:
            with tempfile.TemporaryDirectory(prefix="swarm-box-") as box:
                os.chmod(box, 0o755)
                for name, text in {**(files or {}), "main.py": program}.items():
                    target = Path(box) / _plain_name(name)
                    target.write_text(text, encoding="utf-8")
                    target.chmod(0o644)
                return await self._spawn(self._argv(box, uid, timeout_s), timeout_s)
        finally:
            self._slots.put_nowait(uid)

    def _argv(self, box: str, uid: int, timeout_s: float) -> list[str]:
        cfg = self._config
        limits = [
            self._prlimit,
            f"--cpu={math.ceil(timeout_s) + 1}",
            f"--as={cfg.memory_mb * 1024 * 1024}",
            f"--nproc={cfg.max_processes}",
            f"--fsize={cfg.output_cap_bytes * 16}",
            "--core=0",
            "--",
        ]
        if self._drop_privileges:
            unshare = ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try"]
        else:
            unshare = ["--unshare-all"]
        mounts = ["--ro-bind", "/usr", "/usr"]
        for link in ("bin", "lib", "lib64", "sbin"):
            host = Path("/") / link
            if host.is_symlink():
                mounts += ["--symlink", os.readlink(host), str(host)]
            elif host.is_dir():
                mounts += ["--ro-bind", str(host), str(host)]
        for parent in reversed(Path(self._prefix).parents):
            if str(parent) != "/" and not str(parent).startswith("/usr"):
                mounts += ["--perms", "0755", "--dir", str(parent)]
        mounts += ["--ro-bind", self._prefix, self._prefix]
        mounts += ["--perms", "1777", "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev", "--ro-bind", box, "/box"]
        bwrap = [
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
            "--cap-drop",
            "ALL",
        ]
        command = [self._python, "-I", "/box/main.py"]
        if self._drop_privileges:
            bwrap += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
            command = [
                self._setpriv,
                f"--reuid={uid}",
                f"--regid={uid}",
                "--clear-groups",
                "--inh-caps=-all",
                "--bounding-set=-all",
                "--no-new-privs",
                "--",
                *command,
            ]
        return [*limits, *bwrap, *command]

    async def _spawn(self, argv: list[str], timeout_s: float) -> ExecResult:
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as exc:
            raise SandboxUnavailableError(f"cannot start bubblewrap ({argv[argv.index('--') + 1]}): {exc}") from exc
        cap = self._config.output_cap_bytes
        overflow: list[str] = []
        out, err = bytearray(), bytearray()

        async def pump(stream: asyncio.StreamReader | None, buf: bytearray, name: str) -> None:
            if stream is None:
                return
            while chunk := await stream.read(_READ_CHUNK):
                if len(buf) + len(chunk) > cap:
                    buf.extend(chunk[: cap - len(buf)])
                    if not overflow:
                        overflow.append(name)
                        _kill_group(proc)
                    continue
                buf.extend(chunk)

        timed_out = False
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(pump(proc.stdout, out, "stdout"), pump(proc.stderr, err, "stderr"))
                await proc.wait()
        except TimeoutError:
            timed_out = True
        finally:
            if proc.returncode is None:
                _kill_group(proc)
                with contextlib.suppress(ProcessLookupError):
                    await proc.wait()
        duration_ms = (time.monotonic() - started) * 1000.0
        return ExecResult(
            exit_code=proc.returncode,
            timed_out=timed_out,
            reason=_reason(proc.returncode, timed_out, timeout_s, overflow, cap),
            stdout=out.decode("utf-8", "replace"),
            stderr=err.decode("utf-8", "replace"),
            duration_ms=duration_ms,
        )


def _plain_name(name: str) -> str:
    """Files live flat in the box: a name with a directory part could write outside it."""
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise ValueError(f"sandbox file name {name!r} must be a plain file name")
    return name


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    """Kill bwrap's process group; the sandbox's pid namespace dies with it (--die-with-parent)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _reason(code: int | None, timed_out: bool, timeout_s: float, overflow: list[str], cap: int) -> str:
    if timed_out:
        return f"timed out after {timeout_s:g}s"
    if overflow:
        return f"{overflow[0]} exceeded {cap} bytes"
    if code is None:
        return "did not finish"
    signum = -code if code < 0 else code - 128 if code > 128 else 0
    if signum > 0:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        hint = " (a CPU-time or memory limit was hit)" if signum in (signal.SIGXCPU, signal.SIGKILL) else ""
        return f"killed by {name}{hint}"
    return ""
