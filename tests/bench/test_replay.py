"""The replay server speaks the OpenAI protocol the swarm's client expects and serves draws by instance."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from swarm_bench.data import load_records
from swarm_bench.replay import NO_TESTS_REPLY, REFINE_REPLY, ReplayRequest, ReplayServer
from swarmlib import ChatClient, Endpoint, LLMHTTPError, RetryPolicy, list_models
from tests.bench import data

TASK = 'def triple(x):\n    """Return 3 * x."""\n'
WRAPPED = f"Complete the following Python code. Return the whole program.\n```python\n{TASK.rstrip()}\n```"
MESSAGES = [{"role": "system", "content": "You are a programmer."}, {"role": "user", "content": WRAPPED}]


@pytest.fixture
def seen() -> list[ReplayRequest]:
    return []


@pytest.fixture
async def replay(seen: list[ReplayRequest]) -> AsyncIterator[ReplayServer]:
    async with ReplayServer(on_request=seen.append) as server:
        server.register(TASK, ["    return 3 * x\n", "    return x * 3\n", "    return x + x + x\n"], None)
        yield server


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def endpoint(server: ReplayServer, k: int) -> Endpoint:
    return Endpoint(f"replay-{k}", server.base_url(k), "replay")


async def test_models_and_streamed_solve_by_instance(
    replay: ReplayServer, http: httpx.AsyncClient, seen: list[ReplayRequest]
) -> None:
    assert await list_models(http, endpoint(replay, 7)) == ["replay"]
    client = ChatClient(http, RetryPolicy(attempts=1))
    first = await client.complete(endpoint(replay, 0), MESSAGES, timeout=5, run_id="r1")
    fifth = await client.complete(endpoint(replay, 4), MESSAGES, timeout=5, run_id="r1")  # 4 % 3 == 1
    assert first.text == "    return 3 * x\n"
    assert fifth.text == "    return x * 3\n"
    assert first.usage_reported and first.finish_reason == "stop" and first.completion_tokens > 0
    assert [(r.instance, r.purpose, r.status) for r in seen if r.path.endswith("completions")] == [
        (0, "solve", 200),
        (4, "solve", 200),
    ]


async def test_second_solve_on_one_instance_in_one_run_is_refused(
    replay: ReplayServer, http: httpx.AsyncClient
) -> None:
    client = ChatClient(http, RetryPolicy(attempts=1))
    await client.complete(endpoint(replay, 1), MESSAGES, timeout=5, run_id="run-a")
    with pytest.raises(LLMHTTPError) as err:
        await client.complete(endpoint(replay, 1), MESSAGES, timeout=5, run_id="run-a")
    assert err.value.status_code == 409
    again = await client.complete(endpoint(replay, 1), MESSAGES, timeout=5, run_id="run-b")
    assert again.text == "    return x * 3\n"


async def test_tests_refine_and_plain_json(replay: ReplayServer, http: httpx.AsyncClient) -> None:
    client = ChatClient(http, RetryPolicy(attempts=1))
    none = await client.complete(endpoint(replay, 0), MESSAGES, timeout=5, purpose="tests")
    assert none.text == NO_TESTS_REPLY
    replay.register(TASK, ["    return 3 * x\n"], ["assert triple(1) == 3", "assert triple(0) == 0"])
    tests = await client.complete(endpoint(replay, 2), MESSAGES, timeout=5, purpose="tests")
    assert tests.text == "assert triple(1) == 3\nassert triple(0) == 0"
    refine = await client.complete(endpoint(replay, 0), MESSAGES, timeout=5, purpose="refine")
    assert refine.text == REFINE_REPLY
    response = await http.post(
        replay.base_url(5) + "/chat/completions",
        json={"model": "replay", "messages": MESSAGES, "stream": False},
        headers={"X-Swarm-Purpose": "solve"},
    )
    body = response.json()
    assert response.status_code == 200 and body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"] == "    return 3 * x\n"
    assert body["usage"]["completion_tokens"] > 0


async def test_unknown_task_and_route_are_404_json(replay: ReplayServer, http: httpx.AsyncClient) -> None:
    other = [{"role": "user", "content": "Write fizzbuzz"}]
    response = await http.post(replay.base_url(0) + "/chat/completions", json={"messages": other, "stream": True})
    assert response.status_code == 404
    assert "no registered task" in response.json()["error"]["message"]
    response = await http.get(f"http://127.0.0.1:{replay.port}/v1/models")
    assert response.status_code == 404 and "error" in response.json()


def test_load_records_reads_gzipped_jsonl(tmp_path: Path) -> None:
    path = data.write(tmp_path / "tiny.jsonl.gz", data.records(with_reference=False))
    records = load_records(path)
    assert [r.task_id for r in records] == ["Tiny/0", "Tiny/1"]
    assert records[0].generated_tests == ("assert add(1, 2) == 3", "assert add(0, 0) == 0")
    assert records[1].generated_tests is None and records[1].reference_test is None
    assert records[1].candidates[2].source == "chat/t0.2#3"
