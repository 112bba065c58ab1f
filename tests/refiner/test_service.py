"""The Refiner over a real gRPC channel, talking to the fake LLM server."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import pytest

from swarm.v1 import common_pb2, refiner_pb2, refiner_pb2_grpc
from swarm_refiner.config import RefinerConfig
from swarm_refiner.server import create_server
from swarmlib import PURPOSE_HEADER, RUN_HEADER
from tests.fakes import REFINED_FIB_REPLY, Behaviour, FakeLLMServer

TASK = "Write a Python function fib(n) that returns the n-th Fibonacci number (fib(0) == 0, fib(1) == 1)."
FAILURE_OUTPUT = "AssertionError: fib(1) returned 0, expected 1"
OFF_BY_ONE = "def fib(n):\n    a, b = 0, 1\n    for _ in range(n - 1):\n        a, b = b, a + b\n    return a\n"


@pytest.fixture(scope="module")
async def llm() -> AsyncIterator[FakeLLMServer]:
    async with FakeLLMServer(model="qwen-refiner", reply=REFINED_FIB_REPLY) as srv:
        yield srv


@pytest.fixture(autouse=True)
def reset_llm(llm: FakeLLMServer) -> None:
    llm.behaviour = Behaviour.ANSWER
    llm.reply = REFINED_FIB_REPLY
    llm.script.clear()
    llm.requests.clear()


def configured_instances(llm: FakeLLMServer) -> str:
    """The refiner's own instance list: only these may be sent a key from its environment."""
    return json.dumps(
        [
            {"name": "qwen-a", "base_url": llm.base_url, "model": llm.model, "api_key_env": "REFINER_TEST_KEY"},
            {"name": "remote", "base_url": llm.base_url, "model": "m", "api_key_env": "NOT_SET_ANYWHERE"},
        ]
    )


@pytest.fixture(scope="module")
async def stub(llm: FakeLLMServer) -> AsyncIterator[refiner_pb2_grpc.RefinerServiceStub]:
    env = {
        "SWARM_REFINER_ADDR": "127.0.0.1:0",
        "SWARM_METRICS_ADDR": "127.0.0.1:0",
        "SWARM_REFINER_LLM_TIMEOUT_S": "5",
        "REFINER_TEST_KEY": "sk-refine",
        "SWARM_INSTANCES": configured_instances(llm),
    }
    server, port = await create_server(RefinerConfig.from_env(env))
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield refiner_pb2_grpc.RefinerServiceStub(channel)
    await server.stop(grace=0.5)


def request(llm: FakeLLMServer, **changes: object) -> refiner_pb2.RefineRequest:
    top = refiner_pb2.RefineInput(
        candidate=common_pb2.CandidateCode(
            id="c2",
            text=f"Here you go:\n```python\n{OFF_BY_ONE}```",
            code=OFF_BY_ONE,
        ),
        scores=common_pb2.Scores(overall=0.7, correctness=0.5, completeness=1.0, tests_passed=1, tests_total=2),
        tests=[
            common_pb2.TestResult(name="fib(0) == 0", passed=True),
            common_pb2.TestResult(name="fib(1) == 1", passed=False, output=FAILURE_OUTPUT),
        ],
    )
    message = refiner_pb2.RefineRequest(
        run_id="run-7",
        task=TASK,
        top=[top],
        analysis="Two clusters: loops running n times versus n - 1 times.",
        instance=common_pb2.InstanceRef(
            name="qwen-a",
            base_url=llm.base_url,
            model=llm.model,
            api_key_env="REFINER_TEST_KEY",
            seed=11,
            price_input_per_mtok=1.0,
            price_output_per_mtok=2.0,
        ),
    )
    for key, value in changes.items():
        if key == "instance":
            message.instance.CopyFrom(value)  # type: ignore[arg-type]
        elif key == "top":
            del message.top[:]
        else:
            setattr(message, key, value)
    return message


async def test_refine_returns_extracted_code(llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub) -> None:
    response = await stub.Refine(request(llm))
    assert response.text == REFINED_FIB_REPLY
    assert response.code.startswith("def fib(n: int) -> int:")
    assert "```" not in response.code
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0
    expected_cost = (response.usage.prompt_tokens * 1.0 + response.usage.completion_tokens * 2.0) / 1e6
    assert response.usage.cost_usd == pytest.approx(expected_cost)
    assert response.latency_ms > 0

    (sent,) = llm.chat_requests
    assert sent.headers[PURPOSE_HEADER] == "refine"
    assert sent.headers[RUN_HEADER] == "run-7"
    assert sent.headers["Authorization"] == "Bearer sk-refine"
    assert sent.body["temperature"] == pytest.approx(0.2)
    assert sent.body["model"] == "qwen-refiner"
    assert sent.body["seed"] == 11
    assert sent.body["max_tokens"] == 768
    assert sent.prompt == response.prompt


async def test_prompt_carries_failing_test_output(
    llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub
) -> None:
    response = await stub.Refine(request(llm, max_tokens=200))
    assert FAILURE_OUTPUT in response.prompt
    assert "fib(1) == 1" in response.prompt
    assert "Two clusters" in response.prompt
    assert TASK in response.prompt
    assert "`fib`" in response.prompt
    assert llm.chat_requests[0].body["max_tokens"] == 200


async def test_retries_a_transient_failure(llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub) -> None:
    llm.enqueue(Behaviour.HTTP_429)
    response = await stub.Refine(request(llm))
    assert response.code
    assert len(llm.chat_requests) == 2


async def test_llm_500_is_unavailable(llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub) -> None:
    llm.behaviour = Behaviour.HTTP_500
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Refine(request(llm))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "HTTP 500" in (info.value.details() or "")


async def test_llm_hang_respects_the_callers_deadline(
    llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub
) -> None:
    llm.behaviour = Behaviour.HANG
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Refine(request(llm), timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


async def test_bad_input_is_invalid_argument_with_every_problem(
    llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub
) -> None:
    bad = request(llm, task="  ", top=[], instance=common_pb2.InstanceRef(name="x"))
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Refine(bad)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = info.value.details() or ""
    for needle in ("task is empty", "top is empty", "instance.base_url", "instance.model"):
        assert needle in details
    assert not llm.requests


async def test_missing_api_key_is_failed_precondition(
    llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub
) -> None:
    instance = common_pb2.InstanceRef(name="remote", base_url=llm.base_url, model="m", api_key_env="NOT_SET_ANYWHERE")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Refine(request(llm, instance=instance))
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "NOT_SET_ANYWHERE" in (info.value.details() or "")


async def test_key_goes_only_to_the_configured_instance(
    llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub
) -> None:
    await stub.Refine(request(llm))
    (sent,) = llm.chat_requests
    assert sent.headers["Authorization"] == "Bearer sk-refine"


@pytest.mark.parametrize(
    "name, base_url",
    [
        ("unknown", None),  # a name the refiner does not know
        ("qwen-a", "http://127.0.0.1:9/attacker/v1"),  # a known name sent to another URL
    ],
)
async def test_key_for_an_unconfigured_instance_is_permission_denied(
    llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub, name: str, base_url: str | None
) -> None:
    instance = common_pb2.InstanceRef(
        name=name, base_url=base_url or llm.base_url, model=llm.model, api_key_env="REFINER_TEST_KEY"
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Refine(request(llm, instance=instance))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "configure it" in (info.value.details() or "")
    assert "sk-refine" not in (info.value.details() or "")
    assert not llm.requests


async def test_key_env_differing_from_the_configured_one_is_permission_denied(
    llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub
) -> None:
    instance = common_pb2.InstanceRef(name="remote", base_url=llm.base_url, model="m", api_key_env="REFINER_TEST_KEY")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Refine(request(llm, instance=instance))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not llm.requests


async def test_instance_without_a_key_needs_no_configuration(
    llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub
) -> None:
    instance = common_pb2.InstanceRef(name="anywhere", base_url=llm.base_url, model=llm.model)
    response = await stub.Refine(request(llm, instance=instance))
    assert response.code
    (sent,) = llm.chat_requests
    assert "Authorization" not in sent.headers


async def test_response_carries_the_explanation_and_template_version(
    llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub
) -> None:
    llm.reply = f"```python\n{OFF_BY_ONE.replace('n - 1', 'n')}```\n\nChanges:\n- Loop n times: fib(1) returned 0.\n"
    response = await stub.Refine(request(llm))
    assert response.explanation == "- Loop n times: fib(1) returned 0."
    assert response.template_version == "refine_v2"
    assert "refinement round 1" in response.prompt
    assert "## Inputs on which the answers disagree" in response.prompt


async def test_reply_without_changes_section_gets_a_summary(
    llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub
) -> None:
    response = await stub.Refine(request(llm))
    assert response.explanation.startswith('No "Changes:" section in the reply; against the best answer (c2):')
    assert "The reply said:" in response.explanation


async def test_a_later_round_shows_the_rejected_attempt(
    llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub
) -> None:
    previous = refiner_pb2.RejectedAttempt(
        attempt=refiner_pb2.RefineInput(
            candidate=common_pb2.CandidateCode(id="r1", code="def fib(n):\n    return n * 2\n"),
            tests=[common_pb2.TestResult(name="fib(1) == 1", passed=False, output="AssertionError: got 2")],
        ),
        reason="assessed 0.300 < best c2 0.700",
        explanation="- Doubled n.",
    )
    message = request(llm, round=2)
    message.previous.CopyFrom(previous)
    response = await stub.Refine(message)
    assert "refinement round 2" in response.prompt
    assert "## Previous refinement attempt (round 1), not kept" in response.prompt
    assert "assessed 0.300 < best c2 0.700" in response.prompt and "return n * 2" in response.prompt


async def test_a_negative_round_is_invalid(llm: FakeLLMServer, stub: refiner_pb2_grpc.RefinerServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Refine(request(llm, round=-1))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "round is -1" in (info.value.details() or "")
    assert not llm.requests
