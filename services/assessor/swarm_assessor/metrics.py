"""The assessor's metrics: every sandboxed execution, how long it ran, which limit stopped it.

The sandbox is wrapped rather than instrumented inside, so both backends (bubblewrap, Runloop)
count alike. CPU time per execution is not in ``ExecResult`` yet, so it is not exported here; the
wall time is (docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram

from swarmlib import ExecResult, Sandbox, SandboxLimit

# A test program runs from milliseconds to its wall-time limit (tens of seconds).
EXEC_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)


class SandboxMetrics:
    """Counts and times executions on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.executions = Counter(
            "swarm_sandbox_executions_total",
            "Sandboxed executions, by backend and the limit that stopped them (none: an ordinary end).",
            ["backend", "limit"],
            registry=registry,
        )
        self.limits = Counter(
            "swarm_sandbox_limits_hit_total",
            "Sandboxed executions stopped by a limit, by limit.",
            ["limit"],
            registry=registry,
        )
        self.seconds = Histogram(
            "swarm_sandbox_execution_duration_seconds",
            "Wall time of one sandboxed execution, by backend.",
            ["backend"],
            registry=registry,
            buckets=EXEC_BUCKETS,
        )

    def observe(self, backend: str, result: ExecResult) -> None:
        limit = SandboxLimit(result.limit).value
        self.executions.labels(backend=backend, limit=limit).inc()
        if result.limit != SandboxLimit.NONE:
            self.limits.labels(limit=limit).inc()
        self.seconds.labels(backend=backend).observe(result.duration_ms / 1000)


class MeteredSandbox:
    """A ``Sandbox`` that records each ``run`` in ``SandboxMetrics`` and is otherwise the one it wraps."""

    def __init__(self, inner: Sandbox, metrics: SandboxMetrics) -> None:
        self._inner = inner
        self._metrics = metrics

    @property
    def backend(self) -> str:
        return self._inner.backend

    @property
    def unavailable_reason(self) -> str | None:
        return self._inner.unavailable_reason

    async def probe(self) -> None:
        await self._inner.probe()

    async def run(self, program: str, timeout_s: float, files: Mapping[str, str] | None = None) -> ExecResult:
        result = await self._inner.run(program, timeout_s, files)
        self._metrics.observe(self._inner.backend, result)
        return result

    async def aclose(self) -> None:
        await self._inner.aclose()
