"""Telling the limit that stopped a program from the way it ended, for both sandbox backends.

A limit enforced by a signal (the wall clock, SIGXCPU) each backend recognises where it decides
the reason. A limit the kernel enforces by refusing a request (no more memory, processes or file
space) ends the program with a Python exception instead, named on its last stderr line; that
table is shared, so both backends classify those exits alike.
"""

from __future__ import annotations

import signal

from ._sandbox import SandboxLimit

# The last stderr line of a program that died of such a limit, the limit, and how to say it
# (formatted with the backend's ``memory_mb``, ``tmp_size_mb`` and ``max_processes``).
_LAST_LINES = (
    ("MemoryError", SandboxLimit.MEMORY, "memory limit of {memory_mb} MB reached (MemoryError)"),
    ("[Errno 27]", SandboxLimit.FILE_SIZE, "file size limit reached (EFBIG)"),
    ("[Errno 28]", SandboxLimit.TMP_SPACE, "/tmp is full ({tmp_size_mb} MB)"),
    (
        "[Errno 11] Resource temporarily unavailable",
        SandboxLimit.PROCESSES,
        "process limit of {max_processes} reached (EAGAIN)",
    ),
    ("can't start new thread", SandboxLimit.PROCESSES, "process limit of {max_processes} reached (no new thread)"),
)


def limit_in_stderr(code: int | None, stderr: str) -> tuple[SandboxLimit, str]:
    """The limit a failed program's last stderr line names, and the template of its wording."""
    if not code:
        return SandboxLimit.NONE, ""
    last = (stderr.strip().splitlines() or [""])[-1]
    for marker, limit, wording in _LAST_LINES:
        if marker in last:
            return limit, wording
    return SandboxLimit.NONE, ""


def signal_limit(signum: int) -> SandboxLimit:
    """SIGXCPU is the CPU-time limit; any other killing signal names no limit for sure."""
    return SandboxLimit.CPU_TIME if signum == signal.SIGXCPU else SandboxLimit.KILLED
