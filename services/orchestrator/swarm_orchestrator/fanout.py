"""Fan one task out to N slots in parallel; a failed slot is retried once on another instance."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarmlib import (
    ChatClient,
    ConfigError,
    LLMConnectError,
    LLMEmptyError,
    LLMError,
    LLMHTTPError,
    LLMMalformedError,
    LLMTimeoutError,
    extract_code,
)

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


@dataclass
class FanoutResult:
    candidates: list[pb.Candidate]
    failures: list[pb.InstanceFailure]


class Fanout:
    """Runs the slots of one swarm run and reports each step through ``emit``."""

    def __init__(self, pool: InstancePool, client: ChatClient) -> None:
        self._pool = pool
        self._client = client

    @property
    def client(self) -> ChatClient:
        return self._client

    async def run(self, settings: FanoutSettings, size: int, emit: Emit, result: FanoutResult) -> None:
        """Fill ``result`` as answers and failures arrive (the caller keeps it if this is interrupted)."""
        assignment = self._pool.assign(size, settings.allowed)
        messages = solve_messages(settings.task)
        async with asyncio.TaskGroup() as group:
            for slot, instance in enumerate(assignment):
                group.create_task(self._slot(slot, instance, settings, messages, emit, result))
        result.candidates.sort(key=lambda c: int(c.id[1:]))

    async def _slot(
        self,
        slot: int,
        instance: str,
        settings: FanoutSettings,
        messages: list[dict[str, str]],
        emit: Emit,
        result: FanoutResult,
    ) -> None:
        for attempt in (1, 2):
            await emit(
                pb.RunSwarmResponse(instance_started=pb.InstanceStarted(slot=slot, instance=instance, attempt=attempt))
            )
            spec = self._pool.spec(instance)
            serving = instance
            self._pool.started(serving)
            try:
                answer = await self._client.complete(
                    self._pool.endpoint(instance),
                    messages,
                    timeout=settings.timeout_s,
                    temperature=spec.temperature,
                    seed=spec.seed + 7919 * slot + 104729 * (attempt - 1) if spec.seed else None,
                    max_tokens=settings.max_tokens,
                    purpose="solve",
                    run_id=settings.run_id,
                )
            except (LLMError, ConfigError) as exc:
                self._pool.failed(instance, str(exc))
                fallback = self._pool.fallback_for(instance, settings.allowed) if attempt == 1 else None
                failure = pb.InstanceFailure(
                    slot=slot,
                    instance=instance,
                    kind=failure_kind(exc),
                    reason=str(exc),
                    attempt=attempt,
                    will_retry=fallback is not None,
                )
                result.failures.append(failure)
                await emit(pb.RunSwarmResponse(instance_failed=failure))
                if fallback is None:
                    return
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
            result.candidates.append(candidate)
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
            return
