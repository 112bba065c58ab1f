"""What a run has received so far, stored as it arrives (``Journal``), so that a run that fails or
is interrupted, or whose orchestrator dies, keeps every answer and failure it had."""

from __future__ import annotations

import logging
from collections.abc import Awaitable

from swarm.v1 import assessor_pb2, common_pb2, orchestrator_pb2 as pb
from swarmlib import StoreUnavailableError

from .stages import Collation
from .store import RunStore

log = logging.getLogger(__name__)


def _add_usage(total: common_pb2.Usage, usage: common_pb2.Usage) -> None:
    total.prompt_tokens += usage.prompt_tokens
    total.completion_tokens += usage.completion_tokens
    total.cost_usd += usage.cost_usd


class Journal:
    """What a run has received so far: answers and failures (stored as they arrive), tokens spent,
    refinement attempts (stored once assessed) and the stages' findings. A run that fails or is
    interrupted keeps all of it, and so does one whose orchestrator dies: a sweep closes it from
    what was stored. A write that fails here only costs that insurance: the run goes on, and its
    end writes everything again."""

    def __init__(self, store: RunStore, run_id: str) -> None:
        self._store = store
        self._run_id = run_id
        self.answers: list[pb.Candidate] = []
        self.failures: list[pb.InstanceFailure] = []
        self.usage = common_pb2.Usage()
        self.assessment: assessor_pb2.AssessResponse | None = None
        self.collation: Collation | None = None

    async def answered(self, candidate: pb.Candidate) -> None:
        self.answers.append(candidate)
        self.spent(candidate.usage)
        await self._keep(self._store.add_candidate(self._run_id, candidate), f"answer {candidate.id}")

    async def failed(self, failure: pb.InstanceFailure) -> None:
        self.failures.append(failure)
        self.spent(failure.usage)  # what an attempt streamed before it failed (zero if nothing)
        await self._keep(self._store.add_failure(self._run_id, failure), f"a failure of slot {failure.slot}")

    def spent(self, usage: common_pb2.Usage) -> None:
        _add_usage(self.usage, usage)

    async def assessed(self, attempt: pb.Candidate) -> None:
        await self._keep(self._store.add_candidate(self._run_id, attempt), f"attempt {attempt.id}")

    async def _keep(self, write: Awaitable[None], what: str) -> None:
        try:
            await write
        except StoreUnavailableError as exc:
            log.warning(
                "run %s: could not store %s as it arrived (%s); the run's end stores it", self._run_id, what, exc
            )
