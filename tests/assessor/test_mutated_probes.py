"""Neighbours of the examples' inputs split programs that agree on the examples only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest_asyncio

from swarm.v1 import assessor_pb2, assessor_pb2_grpc, common_pb2
from swarm_assessor.config import AssessorConfig
from swarm_assessor.probes import mutate_probes
from swarm_assessor.server import create_server

TASK = '''def rolling_max(numbers: list) -> list:
    """Running maximum.
    >>> rolling_max([1, 2, 3, 2, 3, 4, 2])
    [1, 2, 3, 3, 3, 4, 4]
    """
'''
RIGHT = "def rolling_max(numbers):\n    out, best = [], None\n    for n in numbers:\n        best = n if best is None else max(best, n)\n        out.append(best)\n    return out\n"  # noqa: E501
ALSO_RIGHT = (
    "from itertools import accumulate\n\ndef rolling_max(numbers):\n    return list(accumulate(numbers, max))\n"
)
# Right on the example, wrong on an empty list (it invents a 0).
WRONG_ON_EDGES = "def rolling_max(numbers):\n    out, best = [], 0\n    for n in numbers or [0]:\n        best = max(best, n)\n        out.append(best)\n    return out\n"  # noqa: E501


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stub() -> AsyncIterator[assessor_pb2_grpc.AssessorServiceStub]:
    server, port = await create_server(AssessorConfig(address="127.0.0.1:0", mutated_probes=24))
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield assessor_pb2_grpc.AssessorServiceStub(channel)
    await server.stop(0)


def test_mutants_change_one_literal_argument_at_a_time() -> None:
    assert mutate_probes(["f([3, 1], 'ab')"], 10) == [
        "f([], 'ab')",
        "f([1, 3], 'ab')",
        "f([3], 'ab')",
        "f([3, 1, 3], 'ab')",
        "f([3, 1], '')",
        "f([3, 1], 'ba')",
        "f([3, 1], 'aba')",
        "f([3, 1], 'AB')",
    ]
    assert mutate_probes(["f(x)", "g(**kw)"], 10) == []
    assert len(mutate_probes(["f(1)", "f(2)", "f(3)"], 4)) == 4
    # Numbers get both neighbours, the next but one (parity kept) and the double.
    assert mutate_probes(["is_even_sum(8)"], 10) == [f"is_even_sum({n})" for n in (0, 1, -8, 9, 7, 10, 16)]


async def test_edge_inputs_split_programs_the_examples_cannot(
    stub: assessor_pb2_grpc.AssessorServiceStub,
) -> None:
    codes = [RIGHT, ALSO_RIGHT, WRONG_ON_EDGES]
    request = assessor_pb2.AssessRequest(
        task=TASK, candidates=[common_pb2.CandidateCode(id=f"c{i}", code=c) for i, c in enumerate(codes)]
    )
    response = await stub.Assess(request)
    right, also_right, wrong = response.assessments
    assert all(a.scores.tests_passed == 1 for a in response.assessments)  # the example cannot tell
    assert response.probes > 1
    assert right.behaviour == also_right.behaviour != wrong.behaviour
