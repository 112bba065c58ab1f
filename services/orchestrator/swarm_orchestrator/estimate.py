"""EstimateRun: what a run would cost, before it runs, without calling a model.

Input tokens of an answer's prompt come from the instance's tokenizer where it has one (llama.cpp's
``POST /tokenize``, at the server's root beside ``/v1``), else ``len(text) // 4``. Expected output
tokens are the mean completion tokens of the model's stored swarm answers, else ``max_tokens / 2``.
Test writing and one refinement round are counted at the same expectations; the upper bound is
``cost.upper_bound_usd``, what a budget reserves. docs/budgets.md ("The estimate").
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from swarm.v1 import orchestrator_pb2 as pb
from swarmlib import InstanceSpec, entry_points, token_cost_usd

from .config import OrchestratorConfig
from .cost import RunShape, upper_bound_usd
from .pool import InstancePool
from .prompts import solve_messages
from .store import RunStore
from .tests_writer import TESTS_MAX_TOKENS, writer_messages

log = logging.getLogger(__name__)
TOKENIZE_TIMEOUT_S = 3.0


def approx_tokens(text: str) -> int:
    """The documented approximation where no tokenizer answers: four characters a token."""
    return max(1, len(text) // 4)


def priced_instances(allowed: Sequence[str], config: OrchestratorConfig, refine: bool) -> list[str]:
    """The instances whose prices a run may pay: those it may answer on, and the refine instance
    (SWARM_REFINE_INSTANCE) when it refines."""
    extra = [config.refine_instance] if refine and config.refine_instance else []
    return [*allowed, *(name for name in extra if name not in allowed)]


def tokenize_url(base_url: str) -> str:
    """llama.cpp serves ``/tokenize`` at its root; the instance's base URL ends in ``/v1``."""
    root = base_url.rstrip("/")
    return (root[: -len("/v1")] if root.endswith("/v1") else root) + "/tokenize"


@dataclass(frozen=True)
class _Input:
    tokens: int
    source: str
    mean: float
    seen: int


class Estimator:
    """Prices a run from the pool's instances, their tokenizers and the store's history."""

    def __init__(
        self, config: OrchestratorConfig, pool: InstancePool, store: RunStore, http: httpx.AsyncClient
    ) -> None:
        self._config = config
        self._pool = pool
        self._store = store
        self._http = http

    async def count(self, spec: InstanceSpec, text: str) -> tuple[int, str]:
        """Tokens of ``text`` by the instance's tokenizer, else the approximation; and which it was."""
        try:
            response = await self._http.post(
                tokenize_url(spec.base_url), json={"content": text}, timeout=TOKENIZE_TIMEOUT_S
            )
            tokens = response.json().get("tokens") if response.status_code == 200 else None
            if isinstance(tokens, list):
                return len(tokens), "tokenizer"
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.debug("estimate: %s has no tokenizer (%s)", spec.name, exc)
        return approx_tokens(text), "chars/4"

    async def estimate(
        self, task: str, size: int, allowed: Sequence[str], refine: bool, first_round: int = 0
    ) -> pb.EstimateRunResponse:
        """The run at ``size``; with ``first_round`` (an adaptive run's start) also that round's cost,
        priced from the same tokenizer counts and history, so each instance is asked once. Test
        writing and refinement cost the same whatever the size; only the answer slots differ."""
        inputs = await self._inputs(task, allowed)
        functions = entry_points(task)
        writers = self._pool.writers_for(list(allowed), self._config.test_writers) if functions else []
        rounds = self._config.refine_rounds if refine else 0
        rows = self._answer_rows(size, allowed, inputs)
        # Test writing and refinement, the same at any size.
        fixed = self._writing_cost(task, functions, writers, inputs)
        fixed += self._refining_cost(task, rounds, allowed, inputs)
        specs = [self._pool.spec(name) for name in priced_instances(allowed, self._config, refine)]
        shape = RunShape(task, size, len(writers), rounds, self._config.max_tokens)
        response = pb.EstimateRunResponse(
            swarm_size=size,
            instances=rows,
            expected_cost_usd=sum(row.expected_cost_usd for row in rows) + fixed,
            upper_bound_usd=upper_bound_usd(shape, specs),
        )
        if first_round:
            first = self._answer_rows(first_round, allowed, inputs)
            response.adaptive_start = first_round
            response.first_round_cost_usd = sum(row.expected_cost_usd for row in first) + fixed
        return response

    async def _inputs(self, task: str, allowed: Sequence[str]) -> dict[str, _Input]:
        """Per instance: its prompt's tokens (and how they were counted) and its expected output."""
        history = await self._store.model_completion_tokens()
        prompt = "\n".join(m["content"] for m in solve_messages(task))
        inputs: dict[str, _Input] = {}
        for name in allowed:
            spec = self._pool.spec(name)
            tokens, source = await self.count(spec, prompt)
            mean, seen = history.get(spec.model, (self._config.max_tokens / 2, 0))
            inputs[name] = _Input(tokens, source, mean, seen)
        return inputs

    def _answer_rows(self, size: int, allowed: Sequence[str], inputs: dict[str, _Input]) -> list[pb.InstanceEstimate]:
        """Per instance: the slots a run of ``size`` would give it and what they are expected to cost."""
        slots = Counter(self._pool.propose(size, allowed))
        rows: list[pb.InstanceEstimate] = []
        for name in allowed:
            spec, got = self._pool.spec(name), inputs[name]
            rows.append(
                pb.InstanceEstimate(
                    instance=name,
                    model=spec.model,
                    slots=slots.get(name, 0),
                    input_tokens=got.tokens,
                    input_tokens_source=got.source,
                    expected_output_tokens=got.mean,
                    output_tokens_source=f"history ({got.seen} answers)" if got.seen else "prior (max_tokens/2)",
                    price_input_per_mtok=spec.price_input_per_mtok,
                    price_output_per_mtok=spec.price_output_per_mtok,
                    expected_cost_usd=slots.get(name, 0) * spec.cost_usd(got.tokens, round(got.mean)),
                )
            )
        return rows

    def _writing_cost(
        self, task: str, functions: list[str], writers: Sequence[str], inputs: dict[str, _Input]
    ) -> float:
        """The test writers' calls, their prompt the task and the functions to test."""
        text = "\n".join(m["content"] for m in writer_messages(task, functions)) if writers else ""
        return sum(
            self._pool.spec(name).cost_usd(approx_tokens(text), min(TESTS_MAX_TOKENS, round(inputs[name].mean)))
            for name in writers
        )

    def _refining_cost(self, task: str, rounds: int, allowed: Sequence[str], inputs: dict[str, _Input]) -> float:
        """One round expected (most runs stop after it), its prompt the task and three answers, on
        the refine instance if there is one, else on the dearest the run may answer on."""
        if not rounds or not inputs:
            return 0.0
        out = max(got.mean for got in inputs.values())
        refine_in = approx_tokens(task) + 3 * round(out) + 500
        refiners = [self._config.refine_instance] if self._config.refine_instance else allowed
        return max(
            token_cost_usd(refine_in, round(out), s.price_input_per_mtok, s.price_output_per_mtok)
            for s in (self._pool.spec(name) for name in refiners)
        )
