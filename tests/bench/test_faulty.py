"""The faulty instance: each fault reaches the swarm's LLM client as the error it is meant to be,
the draws are seeded and at the rates asked for, and every request is recorded with its fault."""

from __future__ import annotations

import random

import httpx
import pytest

from swarm_bench.faulty import FAULTS, Fault, FaultRates, FaultyLLMServer
from swarmlib import (
    ChatClient,
    Endpoint,
    LLMEmptyError,
    LLMError,
    LLMHTTPError,
    LLMMalformedError,
    LLMTimeoutError,
    RetryPolicy,
)

MESSAGES = [{"role": "user", "content": "add two numbers"}]
EXPECTED: dict[Fault, type[LLMError]] = {
    Fault.HTTP_500: LLMHTTPError,
    Fault.HTTP_503: LLMHTTPError,
    Fault.HTTP_429: LLMHTTPError,
    Fault.HANG: LLMTimeoutError,
    Fault.GARBAGE: LLMMalformedError,
    Fault.NO_DONE: LLMMalformedError,
    Fault.CUT: LLMMalformedError,
    Fault.DROP: LLMMalformedError,
    Fault.EMPTY: LLMEmptyError,
}


def test_every_fault_has_its_expected_error() -> None:
    assert set(EXPECTED) == set(FAULTS)


@pytest.mark.parametrize("fault", list(Fault), ids=lambda f: f.value)
async def test_each_fault_reaches_the_client_as_its_error(fault: Fault) -> None:
    rates = FaultRates({} if fault is Fault.NONE else {fault: 1.0})
    async with FaultyLLMServer(rates=rates, hang_s=5.0) as server, httpx.AsyncClient() as http:
        client = ChatClient(http, RetryPolicy(attempts=1))
        endpoint = Endpoint("faulty", server.base_url, "qwen")
        if fault is Fault.NONE:
            result = await client.complete(endpoint, MESSAGES, timeout=2.0, run_id="run-1", purpose="solve")
            assert "def add" in result.text and result.completion_tokens > 0
        else:
            with pytest.raises(EXPECTED[fault]):
                await client.complete(endpoint, MESSAGES, timeout=0.5, run_id="run-1", purpose="solve")
        [record] = server.log
        assert (record.fault, record.purpose, record.run_id, record.stream) == (fault, "solve", "run-1", True)


@pytest.mark.parametrize("fault", list(Fault), ids=lambda f: f.value)
async def test_whole_json_answers_fault_too(fault: Fault) -> None:
    """A request without ``stream`` gets a whole body: right, or broken the same ways."""
    rates = FaultRates({} if fault is Fault.NONE else {fault: 1.0})
    body = {"model": "qwen", "messages": MESSAGES}
    async with FaultyLLMServer(rates=rates, hang_s=5.0) as server, httpx.AsyncClient() as http:
        try:
            response = await http.post(f"{server.base_url}/chat/completions", json=body, timeout=0.5)
            answer = response.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, ValueError, KeyError):
            answer = None
        if fault is Fault.NONE:
            assert answer is not None and "def add" in answer
        elif fault is Fault.EMPTY:
            assert answer == ""
        else:
            assert answer is None
        assert [r.stream for r in server.log] == [False]


async def test_models_always_answer_and_the_server_keeps_serving_after_faults() -> None:
    async with FaultyLLMServer(rates=FaultRates.uniform(1.0), hang_s=0.2) as server, httpx.AsyncClient() as http:
        client = ChatClient(http, RetryPolicy(attempts=1))
        for _ in range(30):
            with pytest.raises(LLMError):
                await client.complete(Endpoint("faulty", server.base_url, "qwen"), MESSAGES, timeout=0.5)
        models = await http.get(f"{server.base_url}/models")
        assert models.json()["data"][0]["id"] == "qwen"
    assert Fault.NONE not in server.counts() and len(server.log) == 30


def test_draws_are_seeded_and_at_the_rates_asked() -> None:
    rates = FaultRates.uniform(0.3)
    rng_a, rng_b = random.Random(7), random.Random(7)
    assert [rates.draw(rng_a) for _ in range(200)] == [rates.draw(rng_b) for _ in range(200)]
    rng = random.Random(1)
    draws = [rates.draw(rng) for _ in range(20_000)]
    faulty = sum(1 for d in draws if d is not Fault.NONE) / len(draws)
    assert 0.28 < faulty < 0.32 and set(draws) == set(Fault)


def test_rates_must_make_sense() -> None:
    with pytest.raises(ValueError, match="sum to at most 1"):
        FaultRates({Fault.HANG: 0.7, Fault.CUT: 0.5})
    with pytest.raises(ValueError, match="not name NONE"):
        FaultRates({Fault.NONE: 0.1})
