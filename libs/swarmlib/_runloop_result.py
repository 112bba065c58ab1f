"""What a finished program on a Runloop devbox did: its trailer, output, and the limit that stopped it.

Worded as the local backend words it, so clients read one vocabulary whatever ran their code.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

from runloop_api_client.types import DevboxAsyncExecutionDetailView

from ._errors import SandboxUnavailableError
from ._runloop_script import TRAILER
from ._sandbox import ExecResult, SandboxLimit
from ._sandbox_limits import limit_in_stderr, signal_limit


@dataclass(frozen=True)
class Trailer:
    """What the run script reports: exit status, milliseconds, and the two output sizes."""

    exit_code: int
    duration_ms: float
    stdout_bytes: int
    stderr_bytes: int


def parse_trailer(box_id: str, execution: DevboxAsyncExecutionDetailView) -> Trailer:
    match = TRAILER.search(execution.stdout or "")
    if match is None:
        detail = (execution.stderr or "").strip()[-300:] or f"exit status {execution.exit_status}"
        raise SandboxUnavailableError(f"the run script did not finish on devbox {box_id}: {detail}")
    code, ms, out, err = (int(g) for g in match.groups())
    return Trailer(code, float(ms), out, err)


def _capped(text: str, cap: int) -> str:
    return text.encode("utf-8")[:cap].decode("utf-8", "replace")


def result(trailer: Trailer, stdout: str, stderr: str, timeout_s: float, cap: int, memory_mb: int) -> ExecResult:
    code = trailer.exit_code
    # timeout(1) exits 128+9 when it kills; so does a program SIGKILLed otherwise, but not at the deadline.
    timed_out = code == 128 + signal.SIGKILL and trailer.duration_ms >= timeout_s * 1000.0 - 1.0
    overflow = next(
        (name for name, size in (("stdout", trailer.stdout_bytes), ("stderr", trailer.stderr_bytes)) if size > cap),
        None,
    )
    reason, limit = _reason(code, timed_out, timeout_s, overflow, cap)
    if limit is SandboxLimit.NONE:
        reason, limit = _limit_hit(code, stderr, memory_mb)
    return ExecResult(
        exit_code=code,
        timed_out=timed_out,
        reason=reason,
        stdout=_capped(stdout, cap),
        stderr=_capped(stderr, cap),
        duration_ms=trailer.duration_ms,
        limit=limit,
    )


def hung(timeout_s: float) -> ExecResult:
    reason = f"timed out after {timeout_s:g}s (the devbox did not report the end of the program)"
    return ExecResult(None, True, reason, "", "", timeout_s * 1000.0, SandboxLimit.WALL_TIME)


# The limits this backend sets itself (``ulimit -v``, ``ulimit -f``), so its reason names them;
# an exit on another limit's error (no process, no disk space) is classified all the same.
_NAMED_HERE = (SandboxLimit.MEMORY, SandboxLimit.FILE_SIZE)


def _limit_hit(code: int, stderr: str, memory_mb: int) -> tuple[str, SandboxLimit]:
    """A limit that ends a program with an exception rather than a signal, named as the local backend does."""
    limit, wording = limit_in_stderr(code, stderr)
    return (wording.format(memory_mb=memory_mb) if limit in _NAMED_HERE else ""), limit


def _reason(code: int, timed_out: bool, timeout_s: float, overflow: str | None, cap: int) -> tuple[str, SandboxLimit]:
    """The local backend's wording, so clients read one vocabulary whatever ran their code."""
    if timed_out:
        return f"timed out after {timeout_s:g}s", SandboxLimit.WALL_TIME
    if overflow:
        return f"{overflow} exceeded {cap} bytes", SandboxLimit.OUTPUT
    if code > 128:
        signum = code - 128
        try:
            name = signal.Signals(signum).name
        except ValueError:
            return "", SandboxLimit.NONE
        hint = " (a CPU-time or memory limit was hit)" if signum in (signal.SIGXCPU, signal.SIGKILL) else ""
        return f"killed by {name}{hint}", signal_limit(signum)
    return "", SandboxLimit.NONE
