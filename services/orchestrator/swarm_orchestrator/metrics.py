"""The orchestrator's metrics: runs, stages, instance calls, the queue, tokens and cost.

Recorded where they happen (a run's end, a stage, an instance call) on the server's own registry;
the queue and the instances' health are read at scrape time: the queue from the store, the same
numbers ``GetCapacity`` answers, so every replica reports the whole queue (aggregate with ``max``,
never ``sum``), and health from this replica's pool. Labels are bounded: instance names, stage,
status, kind, outcome, never a run id, a task or a caller. docs/metrics.md lists every metric.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarmlib import LATENCY_BUCKETS, ChatResult, OnText

from .pool import InstancePool
from .store_queue import QueueState

# Whole runs and their stages take seconds to minutes (a real model, refinement rounds).
RUN_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0, 600.0)
QUEUE_BUCKETS = (0.01, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
SANDBOX_CPU_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKENS_PER_S_BUCKETS = (1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0)
STAGES = ("gather", "assess", "collate", "refine", "gate")


def _status(run: pb.Run) -> str:
    return pb.RunStatus.Name(run.status).removeprefix("RUN_STATUS_").lower()


@dataclass
class InstanceCall:
    """One call to one instance, timed from its start: first text, then its end."""

    metrics: OrchestratorMetrics
    instance: str
    started: float = field(default_factory=time.perf_counter)
    first_text: float | None = None

    def on_text(self, inner: OnText | None) -> OnText:
        """``on_text`` for the call: notes when the first text came, then passes it on."""

        async def heard(text: str) -> None:
            if self.first_text is None and text:
                self.first_text = time.perf_counter()
            if inner is not None:
                await inner(text)

        return heard

    def answered(self, answer: ChatResult, usage: common_pb2.Usage) -> None:
        m, name = self.metrics, self.instance
        seconds = time.perf_counter() - self.started
        m.request_seconds.labels(instance=name, outcome="answered").observe(seconds)
        if self.first_text is not None:
            m.first_token_seconds.labels(instance=name).observe(self.first_text - self.started)
            generating = time.perf_counter() - self.first_text
            if answer.completion_tokens and generating > 0:
                m.tokens_per_second.labels(instance=name).observe(answer.completion_tokens / generating)
        m.count_usage(name, usage)

    def failed(self, kind: pb.FailureKind) -> None:
        m = self.metrics
        m.request_seconds.labels(instance=self.instance, outcome="failed").observe(time.perf_counter() - self.started)
        m.instance_errors.labels(instance=self.instance, kind=_kind(kind)).inc()


def _kind(kind: pb.FailureKind) -> str:
    return pb.FailureKind.Name(kind).removeprefix("FAILURE_KIND_").lower()


class OrchestratorMetrics:
    """Every orchestrator metric, on ``registry``; ``watch_queue``/``watch_pool`` add the ones
    read at scrape time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.runs = Counter("swarm_runs_total", "Runs that ended, by final status.", ["status"], registry=r)
        self.run_seconds = Histogram(
            "swarm_run_duration_seconds",
            "Time from a run's acceptance to its end (queue wait included), by final status.",
            ["status"],
            registry=r,
            buckets=RUN_BUCKETS,
        )
        self.stage_seconds = Histogram(
            "swarm_stage_duration_seconds",
            "Time one stage of a run took: gather, assess, collate, refine, gate.",
            ["stage"],
            registry=r,
            buckets=RUN_BUCKETS,
        )
        self.queue_wait = Histogram(
            "swarm_queue_wait_seconds", "Time a run waited in the queue at the door.", registry=r, buckets=QUEUE_BUCKETS
        )
        self.request_seconds = Histogram(
            "swarm_instance_request_duration_seconds",
            "Time of one answer request to one instance, by outcome (answered, failed).",
            ["instance", "outcome"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.first_token_seconds = Histogram(
            "swarm_instance_time_to_first_token_seconds",
            "Time from an answer request to its first streamed text.",
            ["instance"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.tokens_per_second = Histogram(
            "swarm_instance_tokens_per_second",
            "Completion tokens per second of generation (after the first text) of one answer.",
            ["instance"],
            registry=r,
            buckets=TOKENS_PER_S_BUCKETS,
        )
        self.instance_errors = Counter(
            "swarm_instance_errors_total",
            "Failed answer requests, by instance and failure kind.",
            ["instance", "kind"],
            registry=r,
        )
        self.tokens = Counter(
            "swarm_llm_tokens_total",
            "Tokens of the swarm's answers, by instance and direction (prompt, completion).",
            ["instance", "direction"],
            registry=r,
        )
        self.cost = Counter(
            "swarm_llm_cost_usd_total",
            "Cost in US dollars of the swarm's answers, by instance.",
            ["instance"],
            registry=r,
        )
        self.consensus = Counter(
            "swarm_consensus_total",
            "Runs that settled a consensus, by whether it was reached.",
            ["reached"],
            registry=r,
        )
        self.gates = Counter("swarm_gate_outcomes_total", "Quality gate verdicts, by outcome.", ["outcome"], registry=r)
        self.refinements = Counter(
            "swarm_refinement_outcomes_total", "Refinement stages, by outcome.", ["outcome"], registry=r
        )
        self.sandbox_cpu = Histogram(
            "swarm_sandbox_cpu_seconds",
            "CPU time of one candidate's sandboxed execution (those that reported it).",
            registry=r,
            buckets=SANDBOX_CPU_BUCKETS,
        )
        self.budget_left = Gauge(
            "swarm_budget_remaining_ratio",
            "Smallest share left of any caller's or tenant's budget, by scope (caller_day, tenant_month, ...).",
            ["scope"],
            registry=r,
        )
        self.waiting = Gauge("swarm_queue_waiting_runs", "Runs waiting in the queue, all replicas.", registry=r)
        self.active = Gauge("swarm_queue_active_runs", "Runs holding slots now, all replicas.", registry=r)
        self.max_active = Gauge("swarm_queue_max_active_runs", "Runs that may be driven at once.", registry=r)
        self.oldest_wait = Gauge(
            "swarm_queue_oldest_wait_seconds", "How long the oldest waiting run has waited.", registry=r
        )
        self.slots = Gauge("swarm_instance_slots", "Requests an instance serves at once.", ["instance"], registry=r)
        self.slots_in_use = Gauge(
            "swarm_instance_slots_in_use", "Slots of an instance held by active runs.", ["instance"], registry=r
        )
        self.healthy = Gauge(
            "swarm_instance_healthy", "1 when this replica sees the instance healthy, else 0.", ["instance"], registry=r
        )

    def call(self, instance: str) -> InstanceCall:
        return InstanceCall(self, instance)

    def count_usage(self, instance: str, usage: common_pb2.Usage) -> None:
        self.tokens.labels(instance=instance, direction="prompt").inc(usage.prompt_tokens)
        self.tokens.labels(instance=instance, direction="completion").inc(usage.completion_tokens)
        self.cost.labels(instance=instance).inc(max(0.0, usage.cost_usd))

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Times the block as stage ``name`` (one of ``STAGES``), whether it ends well or not."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(stage=name).observe(time.perf_counter() - started)

    def run_ended(self, run: pb.Run) -> None:
        """A run's end as stored: its status and latency, its queue wait, what it decided."""
        status = _status(run)
        self.runs.labels(status=status).inc()
        if run.HasField("created_at") and run.HasField("finished_at"):
            seconds = (run.finished_at.ToNanoseconds() - run.created_at.ToNanoseconds()) / 1e9
            self.run_seconds.labels(status=status).observe(max(0.0, seconds))
        self.queue_wait.observe(run.queue_wait_ms / 1000)
        for candidate in run.candidates:
            if candidate.sandbox_cpu_ms > 0:
                self.sandbox_cpu.observe(candidate.sandbox_cpu_ms / 1000)
        if run.HasField("consensus") and run.consensus.cluster_count:
            self.consensus.labels(reached="true" if run.consensus.reached else "false").inc()
        if run.gate.outcome != common_pb2.GATE_OUTCOME_UNSPECIFIED:
            self.gates.labels(
                outcome=common_pb2.GateOutcome.Name(run.gate.outcome).removeprefix("GATE_OUTCOME_").lower()
            ).inc()
        if run.HasField("refinement") and run.refinement.outcome != pb.REFINEMENT_OUTCOME_UNSPECIFIED:
            outcome = pb.RefinementOutcome.Name(run.refinement.outcome).removeprefix("REFINEMENT_OUTCOME_").lower()
            self.refinements.labels(outcome=outcome).inc()

    def show_budgets(self, ratios: Mapping[str, float]) -> None:
        """The budgets' gauge (``Spending.remaining_ratios``); a scope with no limit is left out."""
        self.budget_left.clear()
        for scope, ratio in ratios.items():
            self.budget_left.labels(scope=scope).set(ratio)

    def show_queue(self, state: QueueState, max_active: int, slots: Mapping[str, int], now_s: float) -> None:
        self.waiting.set(state.depth)
        self.active.set(len(state.started))
        self.max_active.set(max_active)
        oldest = min((t.timestamp() for t in state.enqueued_at.values()), default=now_s)
        self.oldest_wait.set(max(0.0, now_s - oldest))
        in_use = state.in_use()
        for name, count in slots.items():
            self.slots.labels(instance=name).set(count)
            self.slots_in_use.labels(instance=name).set(in_use.get(name, 0))

    def show_pool(self, pool: InstancePool) -> None:
        for state in pool.states():
            self.healthy.labels(instance=state.spec.name).set(1 if state.healthy else 0)


def queue_refresh(
    metrics: OrchestratorMetrics,
    state: Callable[[], Awaitable[QueueState]],
    capacity: Callable[[], tuple[int, Mapping[str, int]]],
) -> Callable[[], Awaitable[None]]:
    """The scrape-time hook: the shared queue, read from the store as ``GetCapacity`` reads it."""

    async def refresh() -> None:
        max_active, slots = capacity()
        metrics.show_queue(await state(), max_active, slots, time.time())

    return refresh
