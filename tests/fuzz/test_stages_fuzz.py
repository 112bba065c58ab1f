"""Every RPC of the collator, assessor and refiner with generated requests, over real channels.

The stages hold no state, so the check is the answer alone: OK or a deliberate status whose
message names what to fix. Candidate code runs for real in the assessor's bubblewrap sandbox, and
the refiner calls a fake instance, so URLs are drawn from loopback addresses and non-URLs only:
a fuzzed request never makes the refiner reach anything off this machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import event, given, strategies as st

from swarm.v1 import assessor_pb2, collator_pb2, common_pb2, refiner_pb2
from tests.fakes.replies import FIB_REPLY

from .budget import DEFAULT, LONG, LONG_TIMEOUT_S
from .conftest import REFINER_KEY_ENV, Stack
from .messages import Target, Targets, doubles, integers, messages, texts
from .rpc import Rpc, check_answer, invoke, rpcs

FIB_TASK = "Write a Python function fib(n) that returns the n-th Fibonacci number.\n\n>>> fib(10)\n55\n"
PROGRAMS = [
    "def fib(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a\n",
    "def fib(n):\n    return n\n",
    "while True:\n    pass\n",
    "import os\nos._exit(3)\n",
    "print('x' * 10**6)\n",
    "raise SystemExit(1)\n",
    "def fib(n):\n    return fib(n)\n",
    "x = " + "(" * 300 + ")" * 300 + "\n",
    "def fib(n):\n    return 1 +" + " 1 +" * 3000 + " 1\n",
    "def fib(n:\n",
    "\x00def fib(n): return n\n",
]
TESTS = ["assert fib(10) == 55", "assert fib(0) == 0", "", "assert", "(((", "assert fib(", "fib(1) == 1"]
ASSESSOR = assessor_pb2.DESCRIPTOR.services_by_name["AssessorService"]
COLLATOR = collator_pb2.DESCRIPTOR.services_by_name["CollatorService"]
REFINER = refiner_pb2.DESCRIPTOR.services_by_name["RefinerService"]
RPCS = rpcs(ASSESSOR, COLLATOR, REFINER)
REFINE_INPUT = refiner_pb2.DESCRIPTOR.message_types_by_name["RefineInput"]


def targets(stack: Stack, plausible: bool) -> Targets:
    """The fields that decide how deep a request goes; ``plausible`` draws values each stage accepts."""
    one, two = stack.llm_urls
    program = st.one_of(st.sampled_from(PROGRAMS), texts()) if not plausible else st.sampled_from(PROGRAMS)
    candidate = st.builds(
        common_pb2.CandidateCode,
        id=st.sampled_from(["c1", "c2", "c3", "", " "]) if not plausible else st.just("c"),
        text=st.one_of(st.just(FIB_REPLY), texts()),
        code=program,
        behaviour=st.one_of(st.just(""), texts(max_size=20)),
    )
    top = messages(REFINE_INPUT, Targets({"candidate": candidate}), complete=plausible)
    if plausible:
        candidates: st.SearchStrategy[list[Message]] = st.lists(candidate, min_size=1, max_size=3).map(_numbered)
    else:
        candidates = st.lists(candidate, max_size=40)
    # Anything that passes the refiner's URL check is one of these: loopback only.
    urls = [one, two, "http://127.0.0.1:1/v1", f"{one}/", f"{one}?x=\u202e"]
    not_urls = texts().filter(lambda text: not text.startswith(("http://", "https://")))
    base_url = (
        st.sampled_from(urls) if plausible else st.one_of(st.sampled_from([*urls, "ftp://127.0.0.1/", ""]), not_urls)
    )
    fields: dict[str, Target] = {
        "run_id": st.sampled_from(["", "r1", "0123456789abcdef"]) if plausible else texts(),
        "candidates": candidates,
        "top": st.lists(top, min_size=1 if plausible else 0, max_size=3),
        "InstanceRef.base_url": base_url,
        "InstanceRef.name": st.sampled_from(["fake-1", "fake-2", "", "x" * 300]),
        "InstanceRef.api_key_env": st.sampled_from(["", REFINER_KEY_ENV, "HOME", "RUNLOOP_API_KEY", "\x00"]),
        "InstanceRef.model": st.just("qwen") if plausible else st.one_of(st.sampled_from(["qwen", ""]), texts()),
        "RefineInput.candidate": candidate,
        "generated_tests": st.lists(
            st.sampled_from(TESTS) if plausible else st.one_of(st.sampled_from(TESTS), texts())
        ),
        "attached_tests": st.lists(st.sampled_from(TESTS), max_size=3),
        "task": st.just(FIB_TASK) if plausible else st.one_of(st.just(FIB_TASK), texts()),
        "timeout_seconds": st.sampled_from([0.0, 1.0, 2.5]) if plausible else st.one_of(doubles(), st.just(5.0001)),
        "similarity_threshold": st.floats(0, 1) if plausible else st.one_of(doubles(), st.just(1.0001)),
        "max_tokens": st.integers(0, 256) if plausible else integers((-(2**31), 2**31 - 1)),
        "round": st.integers(0, 3) if plausible else integers((-(2**31), 2**31 - 1)),
    }
    return Targets(fields)


def _numbered(candidates: list[common_pb2.CandidateCode]) -> list[Message]:
    for index, candidate in enumerate(candidates, start=1):
        candidate.id = f"c{index}"
    return list(candidates)


@pytest.fixture(scope="module")
async def channels(fuzz_stack: Stack) -> AsyncIterator[dict[str, grpc.aio.Channel]]:
    stages = fuzz_stack.stages
    targets_by_service = {
        ASSESSOR.full_name: stages.assessor,
        COLLATOR.full_name: stages.collator,
        REFINER.full_name: stages.refiner,
    }
    opened = {name: grpc.aio.insecure_channel(target) for name, target in targets_by_service.items()}
    yield opened
    for channel in opened.values():
        await channel.close()


async def fuzz_once(stack: Stack, channels: dict[str, grpc.aio.Channel], rpc: Rpc, data: st.DataObject) -> None:
    plausible = data.draw(st.booleans(), label="plausible")
    request = data.draw(messages(rpc.input, targets(stack, plausible), complete=plausible), label="request")
    outcome = await invoke(channels[rpc.service], rpc, request)
    event(f"{rpc}: {outcome.code.name}")
    check_answer(rpc, outcome)


@pytest.mark.parametrize("rpc", RPCS, ids=str)
@DEFAULT
@given(data=st.data())
async def test_every_stage_rpc(
    fuzz_stack: Stack, channels: dict[str, grpc.aio.Channel], rpc: Rpc, data: st.DataObject
) -> None:
    await fuzz_once(fuzz_stack, channels, rpc, data)


@pytest.mark.slow
@pytest.mark.timeout(LONG_TIMEOUT_S)
@pytest.mark.parametrize("rpc", RPCS, ids=str)
@LONG
@given(data=st.data())
async def test_every_stage_rpc_long(
    fuzz_stack: Stack, channels: dict[str, grpc.aio.Channel], rpc: Rpc, data: st.DataObject
) -> None:
    await fuzz_once(fuzz_stack, channels, rpc, data)


def test_every_rpc_of_the_stages_is_fuzzed() -> None:
    declared = {f"{s.full_name}/{m.name}" for s in (ASSESSOR, COLLATOR, REFINER) for m in s.methods}
    assert {f"{r.service}/{r.name}" for r in RPCS} == declared and len(declared) >= 4
