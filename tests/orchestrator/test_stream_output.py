"""``stream_output`` over real channels: each attempt's text arrives batched while its instance writes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections import defaultdict

from swarm.v1 import orchestrator_pb2 as pb
from swarm_bench.openai_wire import stream_pieces
from swarm_bench.stack import Stages, orchestrator
from tests.fakes.openai_server import Behaviour
from tests.fakes.replies import FIB_REPLY
from tests.orchestrator.test_quality_cli import swarm
from tests.orchestrator.test_swarm import FIB_TASK, fakes, named

CHUNK_DELAY_S = 0.01  # ten times faster than the default 100 ms batches


async def timed(stub: object, request: pb.RunSwarmRequest) -> list[tuple[float, pb.RunSwarmResponse]]:
    """Every event of the run with the loop time it reached the client."""
    loop = asyncio.get_running_loop()
    return [(loop.time(), event) async for event in stub.RunSwarm(request)]  # type: ignore[attr-defined]


def outputs_by_attempt(events: list[pb.RunSwarmResponse]) -> dict[tuple[int, int], list[pb.InstanceOutput]]:
    attempts: dict[tuple[int, int], list[pb.InstanceOutput]] = defaultdict(list)
    for event in events:
        if event.HasField("instance_output"):
            attempts[(event.instance_output.slot, event.instance_output.attempt)].append(event.instance_output)
    return attempts


def assert_adds_up(outputs: list[pb.InstanceOutput]) -> str:
    """Each ``length`` is the attempt's text so far; returns that text."""
    text = ""
    for output in outputs:
        text += output.delta
        assert output.delta and output.length == len(text)
    return text


async def test_each_answer_streams_in_batches_while_its_instance_writes(stages: Stages, sqlite_url: str) -> None:
    async with fakes((Behaviour.SLOW, FIB_REPLY), (Behaviour.SLOW, FIB_REPLY)) as servers:
        for server in servers:
            server.chunk_delay = CHUNK_DELAY_S
        async with orchestrator(stages, named(servers), sqlite_url, SWARM_INSTANCE_TIMEOUT_S="30") as orch:
            request = pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, stream_output=True)
            arrivals = await timed(orch.stub, request)
    events = [event for _, event in arrivals]
    run = events[-1].done
    assert run.status == pb.RUN_STATUS_SUCCEEDED
    attempts = outputs_by_attempt(events)
    assert set(attempts) == {(0, 1), (1, 1)}  # the swarm's answers only: the test writer does not stream
    chunks = len(stream_pieces(FIB_REPLY))
    for (slot, _), outputs in attempts.items():
        candidate = next(c for c in run.candidates if c.id == f"c{slot + 1}")
        assert assert_adds_up(outputs) == candidate.text
        assert {o.instance for o in outputs} == {candidate.instance}
        assert 1 < len(outputs) <= chunks // 2, f"{len(outputs)} events for {chunks} chunks"
        first = next(t for t, e in arrivals if e.HasField("instance_output") and e.instance_output.slot == slot)
        finished = next(t for t, e in arrivals if e.HasField("instance_finished") and e.instance_finished.slot == slot)
        # The instance writes for about chunks * CHUNK_DELAY_S (1 s): its text comes as it writes.
        assert finished - first > chunks * CHUNK_DELAY_S / 2
    kinds = [e.WhichOneof("event") for e in events]
    last_output = max(i for i, kind in enumerate(kinds) if kind == "instance_output")
    assert last_output < kinds.index("assessed")  # refinement, which comes later, does not stream either
    for slot in (0, 1):
        slot_kinds = [k for k, e in zip(kinds, events, strict=True) if _slot(e) == slot]
        assert slot_kinds[0] == "instance_started" and slot_kinds[-1] == "instance_finished"
        assert set(slot_kinds[1:-1]) == {"instance_output"}


def _slot(event: pb.RunSwarmResponse) -> int | None:
    which = event.WhichOneof("event")
    if which in ("instance_started", "instance_output", "instance_finished", "instance_failed"):
        return int(getattr(event, which).slot)
    return None


async def test_a_fallback_attempt_streams_afresh(stages: Stages, sqlite_url: str) -> None:
    async with (
        fakes((Behaviour.TRUNCATED, FIB_REPLY), (Behaviour.ANSWER, FIB_REPLY)) as servers,
        orchestrator(stages, named(servers), sqlite_url, SWARM_TEST_WRITERS="0") as orch,
    ):
        request = pb.RunSwarmRequest(task=FIB_TASK, swarm_size=2, skip_refine=True, stream_output=True)
        events = [event for _, event in await timed(orch.stub, request)]
    run = events[-1].done
    assert run.status == pb.RUN_STATUS_SUCCEEDED
    failure = next(e.instance_failed for e in events if e.HasField("instance_failed"))
    assert failure.instance == "fake-1" and failure.will_retry
    attempts = outputs_by_attempt(events)
    broken = assert_adds_up(attempts[(failure.slot, 1)])
    assert broken and FIB_REPLY.startswith(broken) and broken != FIB_REPLY  # half an answer, then the break
    retried = attempts[(failure.slot, 2)]
    assert retried[0].length == len(retried[0].delta)  # attempt 2 starts from nothing
    candidate = next(c for c in run.candidates if c.id == f"c{failure.slot + 1}")
    assert candidate.instance == "fake-2" and assert_adds_up(retried) == candidate.text
    kinds = [(e.WhichOneof("event"), e.instance_output.attempt) for e in events if _slot(e) == failure.slot]
    failed_at = kinds.index(("instance_failed", 0))
    assert all(attempt == 1 for kind, attempt in kinds[:failed_at] if kind == "instance_output")
    assert all(attempt == 2 for kind, attempt in kinds[failed_at:] if kind == "instance_output")


async def test_without_stream_output_no_text_is_streamed(stages: Stages, sqlite_url: str) -> None:
    async with fakes((Behaviour.SLOW, FIB_REPLY)) as servers:
        servers[0].chunk_delay = CHUNK_DELAY_S
        async with orchestrator(stages, named(servers), sqlite_url, SWARM_INSTANCE_TIMEOUT_S="30") as orch:
            request = pb.RunSwarmRequest(task=FIB_TASK, swarm_size=1, skip_refine=True)
            events = [event for _, event in await timed(orch.stub, request)]
    kinds = [e.WhichOneof("event") for e in events]
    assert "instance_output" not in kinds
    assert kinds[:3] == ["accepted", "instance_started", "instance_finished"] and kinds[-1] == "done"


async def swarm_run_lines(target: str, key: str, *args: str) -> tuple[int, list[tuple[float, str]], str]:
    """``swarm run`` as a subprocess: its exit code, each stderr line with the time it was read, stdout."""
    loop = asyncio.get_running_loop()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "swarm_cli.main",
        "--target",
        target,
        "--api-key",
        key,
        "run",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    stdout = asyncio.create_task(process.stdout.read())
    lines = []
    while line := await asyncio.wait_for(process.stderr.readline(), timeout=120):
        lines.append((loop.time(), line.decode().rstrip("\n")))
    code = await asyncio.wait_for(process.wait(), timeout=30)
    return code, lines, (await stdout).decode()


async def test_swarm_run_stream_prints_each_line_of_the_answer_as_it_is_written(
    stages: Stages, sqlite_url: str
) -> None:
    async with fakes((Behaviour.SLOW, FIB_REPLY)) as servers:
        servers[0].chunk_delay = CHUNK_DELAY_S
        async with orchestrator(
            stages, named(servers), sqlite_url, SWARM_INSTANCE_TIMEOUT_S="30", SWARM_TEST_WRITERS="0"
        ) as orch:
            code, lines, out = await swarm_run_lines(
                orch.target, orch.api_key, "--stream", FIB_TASK, "--size", "1", "--no-refine"
            )
            assert code == 0, lines
            assert "final answer (c1, swarm" in out and "slot 1 |" not in out  # the result alone on stdout
            prefix = "  slot 1 |"
            written = [(t, line) for t, line in lines if line.startswith(prefix)]
            answer = "\n".join(line.removeprefix(prefix).removeprefix(" ") for _, line in written) + "\n"
            assert answer == FIB_REPLY
            answered_at = next(i for i, (_, line) in enumerate(lines) if "slot 1: fake-1 answered" in line)
            assert lines[answered_at - 1][1] == written[-1][1]  # all of the text, then the answer's line
            # The text is printed as the instance writes it (about a second), not once it has answered.
            assert lines[answered_at][0] - written[0][0] > len(stream_pieces(FIB_REPLY)) * CHUNK_DELAY_S / 2

            code, out, err = await swarm(
                orch.target, "run", "--json", FIB_TASK, "--size", "1", "--no-refine", key=orch.api_key
            )
            assert code == 0 and json.loads(out)["status"] == "RUN_STATUS_SUCCEEDED" and "slot 1 |" not in err
            code, _, err = await swarm(orch.target, "run", "--stream", "--json", FIB_TASK)
            assert code == 2 and "not allowed with argument" in err
