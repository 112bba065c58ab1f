"""Every OrchestratorService RPC with generated requests and credentials (API keys, good and bad,
and the ``x-swarm-user`` a service key may name), on SQLite and PostgreSQL.

Whatever arrives, the answer is OK or a deliberate status whose message says what to fix, and the
store holds nothing half-written: a refused RunSwarm adds no run, a refused call changes no run,
no reputation and no approval queue, and every run that was accepted ends in a terminal state.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import cast

import grpc
import pytest
from google.protobuf.message import Message
from hypothesis import event, given, strategies as st

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarm_bench.stack import CHANNEL_OPTIONS, instances_json, orchestrator
from swarm_orchestrator.identity import USER_METADATA
from swarmlib import TlsConfig, grpc_channel
from swarmlib.api_keys import add_key

from .budget import DEFAULT, LONG, LONG_TIMEOUT_S
from .conftest import Stack
from .messages import INT32, Targets, huge_lists, integers, messages, texts, timestamps
from .rpc import Rpc, check_answer, invoke, rpcs

MAX_TASK_CHARS = 2_000
MAX_SWARM_SIZE = 4
APPROVER = "alice"
AUTHORIZATION = "authorization"
FIB_TASK = "Write a Python function fib(n) that returns the n-th Fibonacci number.\n\n>>> fib(10)\n55\n"
TASKS = [
    FIB_TASK,
    "Write a function add(a, b) that returns a + b.",
    "def fib(n):\n    '''Return the n-th Fibonacci number.\n    >>> fib(1)\n    1\n    '''\n",
    FIB_TASK + "\u202e\U0001f600\u2028\x1b[31m",
]
RPCS = rpcs(pb.DESCRIPTOR.services_by_name["OrchestratorService"])
MUTATING = {"RunSwarm", "ApproveRun", "RejectRun", "SubmitFeedback"}
TERMINAL = {pb.RUN_STATUS_SUCCEEDED, pb.RUN_STATUS_FAILED, pb.RUN_STATUS_NEEDS_APPROVAL, pb.RUN_STATUS_REJECTED}


@dataclass
class Swarm:
    """The orchestrator under fuzz, and what it has made so far (drawn from for ids and tokens)."""

    stub: orchestrator_pb2_grpc.OrchestratorServiceStub
    # A channel that sends only the credentials a case draws (the stack's own sends its key).
    channel: grpc.aio.Channel
    # Keys of the stack's tenant: an approver (alice), a member and a service key.
    keys: dict[str, str] = field(default_factory=dict)
    run_ids: list[str] = field(default_factory=list)
    page_tokens: list[str] = field(default_factory=list)

    def known_runs(self) -> st.SearchStrategy[str]:
        return st.integers(0, 10**6).map(lambda i: self.run_ids[i % len(self.run_ids)])

    def known_tokens(self) -> st.SearchStrategy[str]:
        return st.integers(0, 10**6).map(lambda i: self.page_tokens[i % len(self.page_tokens)])

    def targets(self) -> Targets:
        """Anything, with the values that reach deep code (ids and tokens that exist) among it."""
        forged = st.sampled_from(
            [
                "0001-01-01T00:00:00+14:00|x",  # a moment before year 1 in UTC
                "9999-12-31T23:59:59-14:00|x",  # a moment after year 9999 in UTC
                "2026-01-01T00:00:00|x",  # no timezone
                "2026-01-01T00:00:00+00:00|\x00",
                "2026-01-01T00:00:00+00:00",
                "not a time|x",
            ]
        ).map(lambda raw: base64.urlsafe_b64encode(raw.encode()).decode())
        return Targets(
            {
                "run_id": st.one_of(self.known_runs(), texts()),
                "page_token": st.one_of(self.known_tokens(), forged, texts()),
                "page_size": st.one_of(integers((-1, 101)), integers(INT32)),
                "RunSwarmRequest.task": st.one_of(
                    st.sampled_from(TASKS),
                    texts(),
                    st.sampled_from(["x" * (MAX_TASK_CHARS + 1), " \n\t ", FIB_TASK + "\x00"]),
                ),
                "RunSwarmRequest.swarm_size": st.one_of(integers((-1, MAX_SWARM_SIZE + 1)), integers(INT32)),
                "RunSwarmRequest.instances": st.one_of(
                    st.lists(
                        st.one_of(st.sampled_from(["fake-1", "fake-2", "nope", "", " fake-1", "FAKE-1"]), texts()),
                        max_size=4,
                    ),
                    huge_lists(st.sampled_from(["fake-1", "nope"])),
                ),
                "RunSwarmRequest.instance_timeout_seconds": st.one_of(
                    st.sampled_from([0.0, 0.001, 5.0, 3600.0, 3600.5, -0.0, float("nan")]),
                    st.floats(allow_nan=True, allow_infinity=True),
                ),
                "RunSwarmRequest.tests": st.one_of(
                    st.lists(
                        st.one_of(
                            st.sampled_from(["assert fib(10) == 55", "", "   ", "assert", "(((", "assert fib(1) == 2"]),
                            texts(),
                        ),
                        max_size=3,
                    ),
                    st.integers(500, 3_000).map(lambda n: [f"assert fib({i}) >= 0" for i in range(n)]),
                ),
                "comment": st.one_of(texts(), st.sampled_from(["c" * 2000, "c" * 2001, "looks fine"])),
                "rating": st.one_of(integers((-1, 7)), integers(INT32)),
                "preferred_candidate_id": st.one_of(st.sampled_from(["c1", "c2", "r1", "", " c1"]), texts()),
                "since": timestamps(),
                "until": timestamps(),
            }
        )

    def valid_targets(self) -> Targets:
        """Values the orchestrator accepts, so that fuzzing also goes past validation, into whole runs."""
        return Targets(
            {
                "run_id": self.known_runs(),
                "page_token": st.one_of(st.just(""), self.known_tokens()),
                "page_size": st.integers(0, 100),
                "RunSwarmRequest.task": st.sampled_from(TASKS),
                "RunSwarmRequest.swarm_size": st.integers(0, MAX_SWARM_SIZE),
                "RunSwarmRequest.instances": st.lists(st.sampled_from(["fake-1", "fake-2"]), max_size=2),
                "RunSwarmRequest.instance_timeout_seconds": st.sampled_from([0.0, 5.0]),
                "RunSwarmRequest.tests": st.lists(st.just("assert fib(10) == 55"), max_size=1),
                "comment": st.sampled_from(["", "looks fine", "c" * 2000]),
                "rating": st.integers(1, 5),
                "preferred_candidate_id": st.sampled_from(["c1", "c2", ""]),
                "since": timestamps(),
                "until": timestamps(),
            }
        )


def identities(keys: dict[str, str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    """An ``authorization``: none, a real key (approver, member, service), a forged or garbled one,
    or any printable text; and the ``x-swarm-user``: none, an approver, another user, blank, two,
    or any printable text."""
    printable = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)
    forged = ["", "hunter2", "swk_zzzzzzzzzzzz_" + "A" * 43, keys["member"][:-1] + "?", keys["approver"].upper()]
    key = st.sampled_from([*keys.values(), *forged]).map(lambda k: [(AUTHORIZATION, f"Bearer {k}")])
    Pairs = list[tuple[str, str]]
    auth: st.SearchStrategy[Pairs] = st.one_of(st.just([]), key, printable.map(lambda t: [(AUTHORIZATION, t)]))
    one = st.one_of(st.sampled_from([APPROVER, "bob", "", " ", "a" * 129, "alice bob", "' OR 1=1 --"]), printable)
    user: st.SearchStrategy[Pairs] = st.one_of(
        st.just([]), st.lists(one.map(lambda name: (USER_METADATA, name)), min_size=1, max_size=2)
    )
    return st.tuples(auth, user).map(lambda pair: pair[0] + pair[1])


@pytest.fixture(scope="module")
async def swarm(fuzz_stack: Stack, fuzz_database: str) -> AsyncIterator[Swarm]:
    one, two = fuzz_stack.llm_urls
    env = {
        "SWARM_MAX_TASK_CHARS": str(MAX_TASK_CHARS),
        "SWARM_MAX_SWARM_SIZE": str(MAX_SWARM_SIZE),
        "SWARM_REFINE_ROUNDS": "1",
    }
    async with AsyncExitStack() as stack:
        orch = await stack.enter_async_context(
            orchestrator(fuzz_stack.stages, instances_json([("fake-1", one), ("fake-2", two)]), fuzz_database, env)
        )
        plain = await stack.enter_async_context(
            grpc_channel(orch.target, TlsConfig(plaintext=True), options=CHANNEL_OPTIONS)
        )
        tenant = "local"
        keys = {
            role: add_key(orch.keys_file, tenant, name, role)[0]
            for role, name in (("approver", APPROVER), ("member", "bob"), ("service", "web"))
        }
        swarm = Swarm(orch.stub, plain, keys)
        # Runs to act on: one the swarm agrees on, one the gates hold (a lone instance has no consensus).
        for size in (2, 1):
            events = [e async for e in orch.stub.RunSwarm(pb.RunSwarmRequest(task=FIB_TASK, swarm_size=size))]
            assert events[-1].done.status in TERMINAL
            swarm.run_ids.append(events[-1].done.id)
        first = await orch.stub.ListRuns(pb.ListRunsRequest(page_size=1))
        swarm.page_tokens.append(first.next_page_token)
        yield swarm


@dataclass(frozen=True)
class State:
    """What a refused call must leave as it was."""

    runs: list[tuple[str, int, float, bool]]
    pending: list[str]
    reputation: list[Message]
    target: Message | None


async def state(swarm: Swarm, run_id: str | None) -> State:
    stub = swarm.stub
    runs: list[tuple[str, int, float, bool]] = []
    token = ""
    while True:
        page = await stub.ListRuns(pb.ListRunsRequest(page_size=100, page_token=token))
        runs.extend((r.id, r.status, r.final_overall, r.consensus_reached) for r in page.runs)
        if not (token := page.next_page_token):
            break
    pending = await stub.ListPendingApprovals(pb.ListPendingApprovalsRequest(page_size=100))
    reputation = await stub.ListReputation(pb.ListReputationRequest())
    target = None
    if run_id in {r[0] for r in runs}:
        target = (await stub.GetRun(pb.GetRunRequest(run_id=run_id))).run
    return State(runs, [p.run.id for p in pending.runs], list(reputation.reputation), target)


async def fuzz_once(swarm: Swarm, rpc: Rpc, data: st.DataObject) -> None:
    plausible = data.draw(st.booleans(), label="plausible")
    targets = swarm.valid_targets() if plausible else swarm.targets()
    request = data.draw(messages(rpc.input, targets, complete=plausible), label="request")
    approver = [(AUTHORIZATION, f"Bearer {swarm.keys['approver']}")]
    who = st.one_of(st.just(approver), identities(swarm.keys)) if plausible else identities(swarm.keys)
    metadata: Sequence[tuple[str, str]] = data.draw(who, label="metadata")
    run_id = getattr(request, "run_id", None)
    before = await state(swarm, run_id)
    outcome = await invoke(swarm.channel, rpc, request, metadata)
    accepted = rpc.name == "RunSwarm" and bool(outcome.responses)
    event(f"{rpc}: {outcome.code.name}" + (" after the run was accepted" if accepted else ""))
    check_answer(rpc, outcome, extra_names=[USER_METADATA])
    for secret in swarm.keys.values():
        assert secret.split("_", 2)[2] not in outcome.details, f"{rpc}: a key's secret in the answer"
    after = await state(swarm, run_id)
    assert all(status in TERMINAL for _, status, _, _ in after.runs), "a run was left RUNNING"

    if rpc.name == "RunSwarm":
        events: list[pb.RunSwarmResponse] = outcome.responses  # type: ignore[assignment]
        if not events:
            assert after == before, "a refused RunSwarm stored something"
            return
        assert events[0].WhichOneof("event") == "accepted" and events[-1].WhichOneof("event") == "done"
        done = events[-1].done
        assert done.status in TERMINAL
        assert [r[0] for r in after.runs] == [done.id] + [r[0] for r in before.runs]
        stored = (await swarm.stub.GetRun(pb.GetRunRequest(run_id=done.id))).run
        assert stored.status == done.status and stored.task == cast(pb.RunSwarmRequest, request).task
        swarm.run_ids.append(done.id)
        return
    if outcome.code != grpc.StatusCode.OK or rpc.name not in MUTATING:
        assert after == before, f"{rpc} ({outcome.code.name}) changed the store"
    if rpc.name == "ListRuns" and outcome.code == grpc.StatusCode.OK:
        token = outcome.responses[0].next_page_token  # type: ignore[attr-defined]
        if token:
            swarm.page_tokens.append(token)


@pytest.mark.parametrize("rpc", RPCS, ids=str)
@DEFAULT
@given(data=st.data())
async def test_every_orchestrator_rpc(swarm: Swarm, rpc: Rpc, data: st.DataObject) -> None:
    await fuzz_once(swarm, rpc, data)


@pytest.mark.slow
@pytest.mark.timeout(LONG_TIMEOUT_S)
@pytest.mark.parametrize("rpc", RPCS, ids=str)
@LONG
@given(data=st.data())
async def test_every_orchestrator_rpc_long(swarm: Swarm, rpc: Rpc, data: st.DataObject) -> None:
    await fuzz_once(swarm, rpc, data)


def test_every_rpc_of_the_contract_is_fuzzed() -> None:
    declared = {m.name for m in pb.DESCRIPTOR.services_by_name["OrchestratorService"].methods}
    assert {r.name for r in RPCS} == declared and "RunSwarm" in declared
