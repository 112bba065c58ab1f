"""Child processes of ``swarm up`` and of the gateway: started with a log file, stopped for sure.

Every child runs in its own session, so it can be stopped (and, for a child that starts children
of its own, its whole process group) without touching the parent's group.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Child:
    """One started process, the file its output goes to, and whether to signal its whole group.

    ``group`` is for launchers (a shell script starting node, which starts workerd): a SIGTERM to
    the leader alone would leave its children running. ``log_start`` is where this process's
    output begins in a log that earlier runs appended to.
    """

    name: str
    process: asyncio.subprocess.Process
    log: Path
    group: bool = False
    log_start: int = 0

    def output(self) -> str:
        """What this process has written to its log so far."""
        try:
            with self.log.open("rb") as log:
                log.seek(self.log_start)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def failure(self, what: str) -> RuntimeError:
        """An error naming the child, what went wrong and the end of its log."""
        return RuntimeError(f"{self.name} {what}; last log lines ({self.log}):\n{self.output()[-2000:]}")

    def exited(self) -> bool:
        return self.process.returncode is not None


def _log_path(log_dir: Path, name: str) -> Path:
    log_dir.mkdir(parents=True, exist_ok=True)
    return log_dir / f"{name}.log"


async def spawn(
    name: str,
    args: Sequence[str],
    env: Mapping[str, str],
    log_dir: Path,
    *,
    cwd: Path | None = None,
    group: bool = False,
) -> Child:
    """Start ``args`` with exactly ``env``, stdout and stderr appended to ``log_dir/<name>.log``."""
    log_path = _log_path(log_dir, name)
    with log_path.open("ab") as log_file:
        start = log_file.tell()
        process = await asyncio.create_subprocess_exec(
            *args,
            stdout=log_file,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    return Child(name, process, log_path, group, start)


def _signal(child: Child, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if child.group:
            os.killpg(child.process.pid, sig)
        elif child.process.returncode is None:
            child.process.send_signal(sig)


async def stop(children: Sequence[Child], grace: float = 10.0) -> None:
    """SIGTERM every child in the given order, then SIGKILL the group of any that outlives ``grace``."""
    for child in children:
        if child.process.returncode is None:
            _signal(child, signal.SIGTERM)
    for child in children:
        try:
            await asyncio.wait_for(child.process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.process.pid, signal.SIGKILL)
            await child.process.wait()
        if child.group:
            # The leader is gone; what it started may not be.
            _signal(child, signal.SIGKILL)
