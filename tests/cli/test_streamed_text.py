"""What `swarm run --stream` prints of the instances' text: whole lines, each with its slot."""

from __future__ import annotations

from swarm.v1 import orchestrator_pb2 as pb
from swarm_cli.render import StreamedText


def output(slot: int, delta: str, attempt: int = 1) -> pb.RunSwarmResponse:
    return pb.RunSwarmResponse(instance_output=pb.InstanceOutput(slot=slot, attempt=attempt, delta=delta))


def test_lines_are_printed_once_complete_and_interleaved_slots_keep_their_prefix() -> None:
    text = StreamedText()
    assert text.lines(output(0, "def fib(n):\n    ret")) == ["  slot 1 | def fib(n):"]
    assert text.lines(output(1, "def fib(n): return n\r\n\n")) == ["  slot 2 | def fib(n): return n", "  slot 2 |"]
    assert text.lines(output(0, "urn n\n")) == ["  slot 1 |     return n"]
    assert text.lines(pb.RunSwarmResponse(instance_started=pb.InstanceStarted(slot=0))) == []


def test_what_is_left_of_a_line_is_printed_when_the_attempt_ends_and_a_fallback_starts_afresh() -> None:
    text = StreamedText()
    assert text.lines(output(0, "def fib(n):\n    return")) == ["  slot 1 | def fib(n):"]
    failed = pb.RunSwarmResponse(instance_failed=pb.InstanceFailure(slot=0, attempt=1))
    assert text.lines(failed) == ["  slot 1 |     return"]
    assert text.lines(output(0, "x = 1", attempt=2)) == []
    finished = pb.RunSwarmResponse(instance_finished=pb.InstanceFinished(slot=0))
    assert text.lines(finished) == ["  slot 1 | x = 1"]
    assert text.lines(finished) == []  # nothing twice
