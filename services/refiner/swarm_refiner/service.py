"""The Refine RPC: one low-temperature call that merges the best answers and their evidence.

The reply's program is returned with what the model says it changed (``explanation``) and the
template version the prompt came from, so a stored refinement can be read and audited later.
"""

from __future__ import annotations

import re
from typing import Any

from swarm.v1 import common_pb2, refiner_pb2, refiner_pb2_grpc
from swarmlib import ChatClient, Endpoint, InvalidArgumentError, extract_code, token_cost_usd

from .config import RefinerConfig
from .explanation import explain
from .prompt import build_prompt

# Refinement should converge on the evidence, not explore: low temperature.
REFINE_TEMPERATURE = 0.2
# The run id is sent to the instance as the X-Swarm-Run-Id header, which only carries visible ASCII.
_RUN_ID = re.compile(r"[\x21-\x7e]{1,128}")


def validate(request: refiner_pb2.RefineRequest) -> None:
    """Reject a request that cannot work, listing every problem so one round trip fixes them all."""
    problems: list[str] = []
    if request.run_id and not _RUN_ID.fullmatch(request.run_id):
        problems.append("run_id must be printable ASCII without spaces, at most 128 characters (it goes in a header)")
    if not request.task.strip():
        problems.append("task is empty: send the task as the user wrote it")
    if not request.top:
        problems.append("top is empty: send at least one candidate (best first)")
    elif not any(item.candidate.code.strip() or item.candidate.text.strip() for item in request.top):
        problems.append("top: every candidate has empty code and text")
    instance = request.instance
    if not instance.base_url.strip():
        problems.append("instance.base_url is empty: set the OpenAI-compatible URL, e.g. http://127.0.0.1:8081/v1")
    elif not instance.base_url.startswith(("http://", "https://")):
        problems.append(f"instance.base_url {instance.base_url!r} must start with http:// or https://")
    if not instance.model.strip():
        problems.append("instance.model is empty: set the model id sent in chat requests")
    if request.max_tokens < 0:
        problems.append(f"max_tokens is {request.max_tokens}: use a positive bound, or 0 for the server default")
    if request.round < 0:
        problems.append(f"round is {request.round}: rounds count from 1 (0 is read as 1)")
    if problems:
        raise InvalidArgumentError("invalid RefineRequest: " + "; ".join(problems))


def _usage(instance: common_pb2.InstanceRef, prompt_tokens: int, completion_tokens: int) -> common_pb2.Usage:
    cost = token_cost_usd(
        prompt_tokens, completion_tokens, instance.price_input_per_mtok, instance.price_output_per_mtok
    )
    return common_pb2.Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, cost_usd=cost)


class RefinerServicer(refiner_pb2_grpc.RefinerServiceServicer):
    """LLM failures surface as the libs' ``LLM*Error``; the server interceptor maps them to a status."""

    def __init__(self, config: RefinerConfig, chat: ChatClient) -> None:
        self._config = config
        self._chat = chat

    async def Refine(self, request: refiner_pb2.RefineRequest, context: Any) -> refiner_pb2.RefineResponse:
        validate(request)
        instance = request.instance
        endpoint = Endpoint(
            name=instance.name or instance.model,
            base_url=instance.base_url,
            model=instance.model,
            api_key=self._config.api_key(instance),
        )
        version = self._config.template
        prompt = build_prompt(
            request.task,
            list(request.top),
            request.analysis,
            round_number=request.round or 1,
            previous=request.previous if request.HasField("previous") else None,
            version=version,
        )
        timeout = self._config.llm_timeout
        remaining = context.time_remaining()
        if remaining is not None:
            # Give up (and say why) just before the caller's own deadline instead of after it.
            timeout = max(0.1, min(timeout, remaining - 0.05))
        result = await self._chat.complete(
            endpoint,
            [{"role": "user", "content": prompt}],
            timeout=timeout,
            temperature=REFINE_TEMPERATURE,
            seed=instance.seed or None,
            max_tokens=request.max_tokens or self._config.default_max_tokens,
            purpose="refine",
            run_id=request.run_id,
        )
        code = extract_code(result.text, request.task)
        best = request.top[0].candidate
        return refiner_pb2.RefineResponse(
            text=result.text,
            code=code,
            prompt=prompt,
            usage=_usage(instance, result.prompt_tokens, result.completion_tokens),
            latency_ms=result.latency_ms,
            explanation=explain(result.text, code, best.code, best.id),
            template_version=version,
        )
