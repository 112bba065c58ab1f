"""Fan one task out to N slots in parallel; a failed slot is retried once on another instance.

A run that asked for ``stream_output`` also hears each attempt's text as it is generated
(``live_output``; docs/live-output.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarmlib import (
    ChatClient,
    ConfigError,
    InstanceSpec,
    LLMConnectError,
    LLMEmptyError,
    LLMError,
    LLMHTTPError,
    LLMMalformedError,
    LLMTimeoutError,
    extract_code,
)

from . import live_output
from .metrics import OrchestratorMetrics
from .pool import InstancePool
from .prompts import solve_messages

Emit = Callable[[pb.RunSwarmResponse], Awaitable[None]]

_KINDS: dict[type[LLMError | ConfigError], pb.FailureKind] = {
    ConfigError: pb.FAILURE_KIND_CONNECT,
    LLMHTTPError: pb.FAILURE_KIND_HTTP_ERROR,
    LLMTimeoutError: pb.FAILURE_KIND_TIMEOUT,
    LLMConnectError: pb.FAILURE_KIND_CONNECT,
    LLMMalformedError: pb.FAILURE_KIND_MALFORMED,
    LLMEmptyError: pb.FAILURE_KIND_EMPTY,
}


def failure_kind(exc: LLMError | ConfigError) -> pb.FailureKind:
    for cls in type(exc).__mro__:
        if cls in _KINDS:
            return _KINDS[cls]
    return pb.FAILURE_KIND_UNSPECIFIED


@dataclass(frozen=True)
class FanoutSettings:
    """Per-run knobs of the fan-out."""

    run_id: str
    task: str
    timeout_s: float
    max_tokens: int
    allowed: list[str]
    # Seconds between instance_output events of an attempt; None: the run did not ask for its text.
    output_batch_s: float | None = None
    # The instance of each slot, when the run queue assigned them; else the pool assigns.
    assignment: tuple[str, ...] = ()


@dataclass(frozen=True)
class Gathered:
    """The swarm's answers (in slot order) and every failed attempt (in the order they failed)."""

    candidates: list[pb.Candidate]
    failures: list[pb.InstanceFailure]


class Arrivals(Protocol):
    """Told of each answer and each failed attempt as it happens, so none is lost if the run is not."""

    async def answered(self, candidate: pb.Candidate) -> None: ...

    async def failed(self, failure: pb.InstanceFailure) -> None: ...


def in_slot_order(candidates: Sequence[pb.Candidate]) -> list[pb.Candidate]:
    """Candidates ordered by the slot that produced them ("c1", "c2", ...)."""
    return sorted(candidates, key=lambda c: int(c.id[1:]))


class _Heard:
    """The text an attempt streamed, passed on to its watcher if any: a failed attempt that had
    streamed was billed for it, so its tokens are estimated from it (docs/budgets.md)."""

    def __init__(self) -> None:
        self.chars = 0
        self.forward: Callable[[str], Awaitable[None]] | None = None

    async def text(self, part: str) -> None:
        self.chars += len(part)
        if self.forward is not None:
            await self.forward(part)

    def usage(self, spec: InstanceSpec, messages: list[dict[str, str]]) -> common_pb2.Usage:
        """Zero before any text (the server may not have charged it), else chars/4 each way."""
        if not self.chars:
            return common_pb2.Usage()
        prompt = max(1, sum(len(m["content"]) for m in messages) // 4)
        completion = max(1, self.chars // 4)
        return common_pb2.Usage(
            prompt_tokens=prompt, completion_tokens=completion, cost_usd=spec.cost_usd(prompt, completion)
        )


class Fanout:
    """Runs the slots of one swarm run and reports each step through ``emit``."""

    def __init__(self, pool: InstancePool, client: ChatClient, metrics: OrchestratorMetrics | None = None) -> None:
        self._pool = pool
        self._client = client
        self._metrics = metrics or OrchestratorMetrics(CollectorRegistry())

    @property
    def client(self) -> ChatClient:
        return self._client

    @property
    def metrics(self) -> OrchestratorMetrics:
        """Where the run's metrics go (the server's registry; a private one when none was given)."""
        return self._metrics

    async def run(
        self, settings: FanoutSettings, size: int, emit: Emit, arrivals: Arrivals, first: int = 0
    ) -> Gathered:
        """Every slot's answer or failures; ``arrivals`` hears of each as it comes. Slots are
        ``first`` to ``first + size - 1`` (an adaptive run's later rounds go on from the earlier)."""
        assignment = list(settings.assignment)[first : first + size] or self._pool.assign(size, settings.allowed)
        messages = solve_messages(settings.task)
        failures: list[pb.InstanceFailure] = []

        async def failed(failure: pb.InstanceFailure) -> None:
            failures.append(failure)
            await arrivals.failed(failure)

        async with asyncio.TaskGroup() as group:
            slots = [
                group.create_task(self._slot(slot, instance, settings, messages, emit, arrivals.answered, failed))
                for slot, instance in enumerate(assignment, start=first)
            ]
        answers = [answer for task in slots if (answer := task.result()) is not None]
        return Gathered(in_slot_order(answers), failures)

    async def _slot(
        self,
        slot: int,
        instance: str,
        settings: FanoutSettings,
        messages: list[dict[str, str]],
        emit: Emit,
        answered: Callable[[pb.Candidate], Awaitable[None]],
        failed: Callable[[pb.InstanceFailure], Awaitable[None]],
    ) -> pb.Candidate | None:
        """The slot's answer, from its instance or else one fallback; None when both failed."""
        for attempt in (1, 2):
            await emit(
                pb.RunSwarmResponse(instance_started=pb.InstanceStarted(slot=slot, instance=instance, attempt=attempt))
            )
            spec = self._pool.spec(instance)
            serving = instance
            self._pool.started(serving)
            heard = _Heard()
            call = self._metrics.call(instance)
            try:
                async with live_output.watch(emit, slot, instance, attempt, settings.output_batch_s) as on_text:
                    heard.forward = on_text
                    answer = await self._client.complete(
                        self._pool.endpoint(instance),
                        messages,
                        timeout=settings.timeout_s,
                        temperature=spec.temperature,
                        seed=spec.seed + 7919 * slot + 104729 * (attempt - 1) if spec.seed else None,
                        max_tokens=settings.max_tokens,
                        purpose="solve",
                        run_id=settings.run_id,
                        on_text=call.on_text(heard.text),
                    )
            except (LLMError, ConfigError) as exc:
                call.failed(failure_kind(exc))
                self._pool.failed(instance, str(exc))
                fallback = self._pool.fallback_for(instance, settings.allowed) if attempt == 1 else None
                failure = pb.InstanceFailure(
                    slot=slot,
                    instance=instance,
                    kind=failure_kind(exc),
                    reason=str(exc),
                    attempt=attempt,
                    will_retry=fallback is not None,
                    usage=heard.usage(spec, messages),
                )
                await failed(failure)
                await emit(pb.RunSwarmResponse(instance_failed=failure))
                if fallback is None:
                    return None
                instance = fallback
                continue
            finally:
                self._pool.finished(serving)
            self._pool.succeeded(instance)
            usage = common_pb2.Usage(
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                cost_usd=spec.cost_usd(answer.prompt_tokens, answer.completion_tokens),
            )
            call.answered(answer, usage)
            candidate = pb.Candidate(
                id=f"c{slot + 1}",
                origin=pb.CANDIDATE_ORIGIN_SWARM,
                instance=instance,
                # What the server says answered: behind one name a gateway may route to several models.
                model=answer.served_model or spec.model,
                text=answer.text,
                code=extract_code(answer.text, settings.task),
                usage=usage,
                latency_ms=answer.latency_ms,
                cluster_id=-1,
            )
            await answered(candidate)
            await emit(
                pb.RunSwarmResponse(
                    instance_finished=pb.InstanceFinished(
                        slot=slot,
                        instance=instance,
                        candidate_id=candidate.id,
                        latency_ms=answer.latency_ms,
                        usage=usage,
                    )
                )
            )
            return candidate
        return None
