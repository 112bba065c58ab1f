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


def tokenize_url(base_url: str) -> str:
    """llama.cpp serves ``/tokenize`` at its root; the instance's base URL ends in ``/v1``."""
    root = base_url.rstrip("/")
    return (root[: -len("/v1")] if root.endswith("/v1") else root) + "/tokenize"


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

    async def estimate(self, task: str, size: int, allowed: Sequence[str], refine: bool) -> pb.EstimateRunResponse:
        max_tokens = self._config.max_tokens
        history = await self._store.model_completion_tokens()
        prompt = "\n".join(m["content"] for m in solve_messages(task))
        slots = Counter(self._pool.propose(size, allowed))
        specs = [self._pool.spec(name) for name in allowed]
        rows: list[pb.InstanceEstimate] = []
        expected_out: dict[str, float] = {}
        for name in allowed:
            spec = self._pool.spec(name)
            tokens, source = await self.count(spec, prompt)
            mean, seen = history.get(spec.model, (max_tokens / 2, 0))
            expected_out[name] = mean
            rows.append(
                pb.InstanceEstimate(
                    instance=name,
                    model=spec.model,
                    slots=slots.get(name, 0),
                    input_tokens=tokens,
                    input_tokens_source=source,
                    expected_output_tokens=mean,
                    output_tokens_source=f"history ({seen} answers)" if seen else "prior (max_tokens/2)",
                    price_input_per_mtok=spec.price_input_per_mtok,
                    price_output_per_mtok=spec.price_output_per_mtok,
                    expected_cost_usd=slots.get(name, 0) * spec.cost_usd(tokens, round(mean)),
                )
            )
        total = sum(row.expected_cost_usd for row in rows)
        functions = entry_points(task)
        writers = self._pool.writers_for(list(allowed), self._config.test_writers) if functions else []
        for name in writers:
            spec = self._pool.spec(name)
            text = "\n".join(m["content"] for m in writer_messages(task, functions))
            total += spec.cost_usd(approx_tokens(text), min(TESTS_MAX_TOKENS, round(expected_out[name])))
        rounds = self._config.refine_rounds if refine else 0
        if rounds and rows:
            # One round expected (most runs stop after it), its prompt the task and three answers.
            out = max(expected_out.values())
            refine_in = approx_tokens(task) + 3 * round(out) + 500
            total += max(
                token_cost_usd(refine_in, round(out), s.price_input_per_mtok, s.price_output_per_mtok) for s in specs
            )
        shape = RunShape(task, size, len(writers), rounds, max_tokens)
        return pb.EstimateRunResponse(
            swarm_size=size, instances=rows, expected_cost_usd=total, upper_bound_usd=upper_bound_usd(shape, specs)
        )
