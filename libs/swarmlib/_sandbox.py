"""One interface for running an untrusted Python program, whatever runs it.

The assessor, the benchmark scorer and ``swarm sandbox exec`` all hold a ``Sandbox`` and never
know which backend is behind it: bubblewrap on this host (``local``) or a Runloop devbox
(``runloop``). ``open_sandbox`` is the only place that picks one, from ``SandboxConfig``, which is
built once from the environment at start-up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from ._config import env_int, env_str, require
from ._runloop_config import RunloopConfig

BACKENDS = ("local", "runloop")


class SandboxLimit(StrEnum):
    """Which limit stopped a program, decided by the backend that saw it end (``swarm.v1.SandboxLimit``).

    The values are the words the assessor's sandbox runner uses for the limits it sees inside a
    program (``swarm_assessor/runner.py``); the assessor maps both to the proto enum in one place.
    """

    NONE = "none"
    WALL_TIME = "wall_time"
    CPU_TIME = "cpu_time"
    MEMORY = "memory"
    OUTPUT = "output"
    FILE_SIZE = "file_size"
    PROCESSES = "processes"
    TMP_SPACE = "tmp_space"
    KILLED = "killed"


@dataclass(frozen=True)
class ExecResult:
    """What one sandboxed execution did.

    ``reason`` says in words why it was stopped and ``limit`` which limit did (empty and ``NONE``
    for an ordinary end): clients decide on ``limit``, never on the words.
    """

    exit_code: int | None
    timed_out: bool
    reason: str
    stdout: str
    stderr: str
    duration_ms: float
    limit: SandboxLimit = SandboxLimit.NONE


def _default_slots() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class SandboxConfig:
    """Backend choice and the limits every execution runs under, on either backend."""

    backend: str = "local"
    memory_mb: int = 512
    max_processes: int = 64
    output_cap_bytes: int = 64 * 1024
    tmp_size_mb: int = 64
    max_slots: int = field(default_factory=_default_slots)
    bwrap_path: str = "/usr/bin/bwrap"
    warm_workers: int = 0
    runloop: RunloopConfig = field(default_factory=RunloopConfig)

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (self.backend in BACKENDS, f"SWARM_SANDBOX={self.backend!r} must be one of {', '.join(BACKENDS)}"),
            (self.memory_mb >= 64, f"SWARM_SANDBOX_MEMORY_MB={self.memory_mb} must be >= 64 (Python needs it)"),
            (self.max_processes >= 1, f"SWARM_SANDBOX_MAX_PROCESSES={self.max_processes} must be >= 1"),
            (
                self.output_cap_bytes >= 1024,
                f"SWARM_SANDBOX_OUTPUT_CAP_BYTES={self.output_cap_bytes} must be >= 1024",
            ),
            (self.tmp_size_mb >= 1, f"SWARM_SANDBOX_TMP_MB={self.tmp_size_mb} must be >= 1"),
            (self.max_slots >= 1, f"SWARM_SANDBOX_SLOTS={self.max_slots} must be >= 1"),
            (bool(self.bwrap_path.strip()), "SWARM_SANDBOX_BWRAP must not be empty"),
            (self.warm_workers >= 0, f"SWARM_SANDBOX_WARM_WORKERS={self.warm_workers} must be >= 0"),
        ]
        require(checks)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SandboxConfig:
        """Read ``SWARM_SANDBOX*`` (and the Runloop settings) from ``env``."""
        return cls(
            backend=env_str(env, "SWARM_SANDBOX", cls.backend).lower(),
            memory_mb=env_int(env, "SWARM_SANDBOX_MEMORY_MB", cls.memory_mb),
            max_processes=env_int(env, "SWARM_SANDBOX_MAX_PROCESSES", cls.max_processes),
            output_cap_bytes=env_int(env, "SWARM_SANDBOX_OUTPUT_CAP_BYTES", cls.output_cap_bytes),
            tmp_size_mb=env_int(env, "SWARM_SANDBOX_TMP_MB", cls.tmp_size_mb),
            max_slots=env_int(env, "SWARM_SANDBOX_SLOTS", _default_slots()),
            bwrap_path=env_str(env, "SWARM_SANDBOX_BWRAP", cls.bwrap_path),
            warm_workers=env_int(env, "SWARM_SANDBOX_WARM_WORKERS", cls.warm_workers),
            runloop=RunloopConfig.from_env(env),
        )


def plain_files(files: Mapping[str, str] | None) -> dict[str, str]:
    """``files`` once their names are checked to be plain: they live flat beside the program, and
    a name with a directory part could write outside the box (both backends refuse it alike)."""
    for name in files or {}:
        if not name or "/" in name or name in (".", "..") or "\0" in name:
            raise ValueError(f"sandbox file name {name!r} must be a plain file name")
    return dict(files or {})


class Sandbox(Protocol):
    """Runs one Python program in isolation; never falls back to running it unsandboxed."""

    @property
    def backend(self) -> str:
        """``bubblewrap`` or ``runloop``: reported to clients so they know what ran their code."""
        ...

    @property
    def unavailable_reason(self) -> str | None:
        """Why the last probe failed, or None when the sandbox works (or was not probed)."""
        ...

    async def probe(self) -> None:
        """Run an empty program once; raise ``SandboxUnavailableError`` saying what is broken."""
        ...

    async def run(self, program: str, timeout_s: float, files: Mapping[str, str] | None = None) -> ExecResult:
        """Run ``program`` as ``main.py`` with ``files`` beside it, within ``timeout_s`` of wall clock."""
        ...

    async def aclose(self) -> None:
        """Release what the backend holds (warm workers, devboxes); the sandbox is unusable after."""
        ...


def open_sandbox(config: SandboxConfig) -> Sandbox:
    """The backend ``config.backend`` names; Runloop's SDK is imported only when it is chosen."""
    if config.backend == "runloop":
        from ._sandbox_runloop import RunloopSandbox

        return RunloopSandbox(config)
    from ._sandbox_local import LocalSandbox

    return LocalSandbox(config)
