"""The fake Runloop API's state: devboxes, the commands they run, injected faults and recorded
requests, each with the view the SDK reads, and the long-polls that wait on a devbox or command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FakeClock:
    """A clock the pool reads instead of ``time.monotonic``; tests move it forward by hand."""

    now: float = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


BOOTING = ("provisioning", "initializing")


class ApiError(Exception):
    """An error answer: status and message, shaped like the API's JSON errors."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Fault:
    """One injected failure. ``after`` acts first and loses the answer (the client must retry)."""

    status: int
    retry_after: str | None = "0.01"
    after: bool = False


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it and what it answered."""

    method: str
    path: str
    op: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int
    replayed: bool = False

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("x-request-id")

    @property
    def devbox_id(self) -> str | None:
        match = re.match(r"/v1/devboxes/([^/]+)", self.path)
        return match.group(1) if match and self.op not in ("list", "create") else None


@dataclass(eq=False)
class FakeExecution:
    """One command running (or finished) in a devbox's home."""

    id: str
    devbox_id: str
    command: str
    command_id: str | None
    process: asyncio.subprocess.Process | None = None
    status: str = "running"
    exit_status: int | None = None
    stdout: str = ""
    stderr: str = ""
    frozen: bool = False
    collected: bool = False
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self, home: Path) -> None:
        """Run the command with ``bash -c`` in the devbox's home, in a session of its own."""
        env = {
            "HOME": str(home),
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
        }
        self.process = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            self.command,
            cwd=home,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )

    async def collect(self) -> None:
        """Wait for the command's end and keep its output; a frozen execution never reports it."""
        assert self.process is not None
        out, err = await self.process.communicate()
        self.stdout = out.decode("utf-8", "replace")
        self.stderr = err.decode("utf-8", "replace")
        self.exit_status = self.process.returncode
        if self.exit_status is not None and self.exit_status < 0:
            self.exit_status = 128 - self.exit_status  # as a shell reports a signal
        self.collected = True
        if not self.frozen:
            self.complete()

    def kill(self) -> None:
        """Kill the command's whole session, if it still runs."""
        process = self.process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)

    def complete(self) -> None:
        self.status = "completed"
        self.done.set()

    def view(self, last_n: int) -> dict[str, Any]:
        out: dict[str, Any] = {"devbox_id": self.devbox_id, "execution_id": self.id, "status": self.status}
        if self.status == "completed":
            stdout, cut_out = _last_lines(self.stdout, last_n)
            stderr, cut_err = _last_lines(self.stderr, last_n)
            out |= {
                "exit_status": self.exit_status,
                "stdout": stdout,
                "stderr": stderr,
                "stdout_truncated": cut_out,
                "stderr_truncated": cut_err,
            }
        return out


@dataclass(eq=False)
class FakeDevbox:
    """A devbox: status with its history, a home directory, and the executions it ran."""

    id: str
    home: Path
    blueprint_id: str | None
    blueprint_name: str | None
    name: str | None
    metadata: dict[str, str]
    status: str = "provisioning"
    failure_reason: str | None = None
    shutdown_reason: str | None = None
    create_time_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    end_time_ms: int | None = None
    transitions: list[dict[str, Any]] = field(default_factory=list)
    executions: dict[str, FakeExecution] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    tunnel: dict[str, Any] | None = None
    # Servers inside this devbox: port -> local port standing in for it (None: nothing listens).
    ports: dict[int, int | None] = field(default_factory=dict)
    running_since: float | None = None  # time.monotonic() when it last came up

    def move(self, status: str) -> None:
        """Change status, record the transition and wake every long-poll waiting on this devbox."""
        self.status = status
        self.running_since = time.monotonic() if status == "running" else None
        self.transitions.append({"status": status, "transition_time_ms": int(time.time() * 1000)})
        if status in ("shutdown", "failure"):
            self.end_time_ms = int(time.time() * 1000)
        self.changed.set()
        self.changed = asyncio.Event()

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "capabilities": [],
            "create_time_ms": self.create_time_ms,
            "end_time_ms": self.end_time_ms,
            "launch_parameters": {},
            "metadata": self.metadata,
            "state_transitions": self.transitions,
            "blueprint_id": self.blueprint_id,
            "name": self.name,
            "failure_reason": self.failure_reason,
            "shutdown_reason": self.shutdown_reason,
            "tunnel": self.tunnel,
        }


async def wait_execution(
    box: FakeDevbox,
    execution: FakeExecution,
    statuses: set[str],
    hold: float,
    last_n: int,
    stopping: asyncio.Event,
    *,
    long_poll: bool,
) -> Any:
    """Answer once the execution is in ``statuses``; after ``hold``, 408 for a long-poll, else as is."""
    deadline = asyncio.get_running_loop().time() + hold
    while True:
        if box.status != "running":
            raise ApiError(400, f"devbox {box.id} is not running (status {box.status})")
        if execution.status in statuses:
            return execution.view(last_n)
        if not await until_any(execution.done, box.changed, deadline, stopping):
            if long_poll:
                raise ApiError(408, f"execution {execution.id} still {execution.status} after {hold:g}s")
            return execution.view(last_n)


async def until_any(first: asyncio.Event, second: asyncio.Event, deadline: float, stopping: asyncio.Event) -> bool:
    """Wait until either event is set or ``deadline``; False on timeout or once ``stopping`` is set."""
    remaining = deadline - asyncio.get_running_loop().time()
    if remaining <= 0 or stopping.is_set():
        return False
    waiters = {asyncio.ensure_future(e.wait()) for e in (first, second, stopping)}
    try:
        await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return (first.is_set() or second.is_set()) and not stopping.is_set()


def home_path(box: FakeDevbox, raw: object) -> Path:
    """A path relative to the devbox's home; absolute or escaping paths would touch the host."""
    if not isinstance(raw, str) or not raw or raw.startswith("/") or ".." in Path(raw).parts:
        raise ApiError(400, f"file_path {raw!r} must be relative to the home directory")
    target = box.home / raw
    if target.is_dir():
        raise ApiError(400, f"{raw!r} is a directory")
    return target


def _last_lines(text: str, n: int) -> tuple[str, bool]:
    lines = text.splitlines(keepends=True)
    return "".join(lines[-n:]), len(lines) > n
