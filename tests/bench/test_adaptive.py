"""An adaptive run over the wire: the real services on ephemeral ports, replay instances serving
scripted answers (slot k is served by replay-k), and the bench's request for each sizing."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

from swarm.v1 import orchestrator_pb2 as pb, orchestrator_pb2_grpc
from swarm_bench.adaptive import Row, request_for, summarise
from swarm_bench.data import Candidate, Record
from swarm_bench.quality import bench_stack
from swarm_bench.replay import ReplayRequest
from tests.bench import data

WRONG = ["    return a - b\n", "    return a * b\n", "    return a - b - 1\n"]
RIVAL = "    return a * 2\n"  # passes the prompt's add(1, 1) == 2, wrong beyond it
RIGHT = ["    return a + b\n", "    return b + a\n", "    return a + b + 0\n", "    return sum((a, b))\n"]


async def _run(
    stub: orchestrator_pb2_grpc.OrchestratorServiceStub, request: pb.RunSwarmRequest
) -> list[pb.RunSwarmResponse]:
    return [event async for event in stub.RunSwarm(request, timeout=120)]


async def test_an_adaptive_run_grows_while_it_disagrees_and_stops_once_settled(tmp_path: Path) -> None:
    calls: Counter[str] = Counter()

    def count(request: ReplayRequest) -> None:
        calls[request.purpose] += 1

    async with bench_stack(7, False, tmp_path / "bench.db", count) as stack:
        # A wrong answer, a rival that passes the prompt's example too, and a right one that no other
        # answer backs yet: the tests cannot tell the two apart, so round 2 brings two more.
        stack.replay.register(data.ADD_PROMPT, [WRONG[0], RIVAL, *RIGHT], None)
        events = await _run(stack.stub, pb.RunSwarmRequest(task=data.ADD_PROMPT, adaptive=True, skip_refine=True))
        stack.replay.unregister(data.ADD_PROMPT)
        accepted, done = events[0].accepted, events[-1].done
        assert accepted.swarm_size == 7 and accepted.quorum == 1, "the run holds (and reserves) the most, 7"
        grown = [e.grown for e in events if e.HasField("grown")]
        assert [(g.round, g.added, g.size) for g in grown] == [(2, 2, 5)]
        assert grown[0].reason == "best answer c3 passes the visible tests but no other answer agrees"
        assert sorted(e.instance_started.slot for e in events if e.HasField("instance_started")) == [0, 1, 2, 3, 4]
        assert calls == {"solve": 5, "tests": 1}, "the test writer runs once"
        assert done.status == pb.RUN_STATUS_SUCCEEDED and done.final.candidate_id in ("c3", "c4", "c5")
        assert sorted(c.id for c in done.candidates) == ["c1", "c2", "c3", "c4", "c5"]
        assert [e.WhichOneof("event") for e in events].count("assessed") == 2, "each round judges all answers"

        # The right answer alone passes the prompt's example, the others fail it: settled at once.
        calls.clear()
        stack.replay.register(data.ADD_PROMPT, [WRONG[0], WRONG[1], RIGHT[0]], None)
        events = await _run(stack.stub, pb.RunSwarmRequest(task=data.ADD_PROMPT, adaptive=True, skip_refine=True))
        stack.replay.unregister(data.ADD_PROMPT)
        assert not [e for e in events if e.HasField("grown")] and calls == {"solve": 3, "tests": 1}
        assert events[-1].done.final.candidate_id == "c3"

        # Nothing agrees and every answer fails the visible test: it grows to its limit (5), then stops.
        calls.clear()
        stack.replay.register(data.ADD_PROMPT, [*WRONG, "    return 0\n", "    return a\n"], None)
        request = pb.RunSwarmRequest(task=data.ADD_PROMPT, adaptive=True, swarm_size=5, skip_refine=True)
        events = await _run(stack.stub, request)
        stack.replay.unregister(data.ADD_PROMPT)
        assert [e.grown.size for e in events if e.HasField("grown")] == [5]
        assert calls == {"solve": 5, "tests": 1} and events[-1].done.swarm_size == 5


def test_the_bench_asks_each_sizing_as_documented() -> None:
    record = Record("T/0", "def f():\n", "f", "completion", (Candidate("m#0", "x"),))
    fixed = request_for("fixed3", record, 7, ["assert f() == 1"])
    assert fixed.swarm_size == 3 and list(fixed.instances) == ["replay-0", "replay-1", "replay-2"]
    assert list(fixed.tests) == ["assert f() == 1"] and fixed.skip_refine and not fixed.adaptive
    auto = request_for("auto", record, 7)
    assert auto.swarm_size == 0 and not auto.instances and not auto.adaptive
    adaptive = request_for("adaptive", record, 7)
    assert adaptive.adaptive and adaptive.swarm_size == 7 and not adaptive.instances


def test_a_rows_file_is_summarised_by_sizing(tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "\n".join(
            json.dumps(asdict(Row(sizing, f"T/{k}", passed, calls, 1, rounds, False, 1.0)))
            for sizing, k, passed, calls, rounds in [
                ("fixed7", 0, True, 7, 1),
                ("fixed7", 1, False, 7, 1),
                ("adaptive", 0, True, 3, 1),
                ("adaptive", 1, False, 7, 3),
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    fixed, adaptive = summarise(rows)
    assert fixed.startswith("fixed7    n=2    pass 0.500 (1/2)  answer calls/task 7.00  test-writer calls/task 1.00")
    assert "answer calls/task 5.00" in adaptive and "rounds 2.00" in adaptive
