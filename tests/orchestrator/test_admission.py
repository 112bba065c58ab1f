"""The queue's rules (``admission``) as plain functions: fairness between callers, strict order,
instance slots and the stages' room."""

from __future__ import annotations

import datetime as dt

from swarm_orchestrator.admission import Capacity, Holding, Waiting, fair_order, next_turn, plan

T0 = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def waiting(run_id: str, caller: str, second: int, size: int = 1, allowed: tuple[str, ...] = ("a",)) -> Waiting:
    return Waiting(run_id, caller, size, allowed, T0 + dt.timedelta(seconds=second))


def first_allowed(run: Waiting, offset: int) -> tuple[str, ...]:
    """Every answer slot on the run's first instance (a pool of one)."""
    return (run.allowed[0],) * run.size


def join(queue: list[Waiting], holding: list[Holding], run_id: str, caller: str) -> None:
    """A run joining with its caller's next turn, a second after the one before."""
    turn = next_turn(caller, queue, holding)
    queue.append(Waiting(run_id, caller, 1, ("a",), T0 + dt.timedelta(seconds=len(queue)), turn))


def test_a_burst_from_one_caller_takes_turns_with_the_others() -> None:
    holding = [Holding("a-running", "alice", ("a",), turn=0)]
    queue: list[Waiting] = []
    for i in range(4):
        join(queue, holding, f"a{i}", "alice")
    for run_id, caller in (("b1", "bob"), ("c1", "carol"), ("b2", "bob")):
        join(queue, holding, run_id, caller)
    # alice holds turn 0 and her burst takes turns 1..4; bob and carol join at the current turn.
    assert [run.run_id for run in fair_order(queue)] == ["b1", "c1", "a0", "b2", "a1", "a2", "a3"]


def test_a_caller_that_keeps_sending_cannot_overtake_a_run_waiting_from_an_earlier_turn() -> None:
    queue: list[Waiting] = []
    join(queue, [], "a0", "alice")
    join(queue, [], "a1", "alice")  # turn 1
    # a0 and later bob's b0 ran; the current turn is now 1, so bob's next runs join at turn 1, after a1.
    holding = [Holding("b0", "bob", ("a",), turn=1)]
    queue = [run for run in queue if run.run_id == "a1"]
    join(queue, holding, "b1", "bob")
    join(queue, holding, "b2", "bob")
    assert [run.run_id for run in fair_order(queue)] == ["a1", "b1", "b2"]


def test_runs_start_while_their_slots_are_free_and_the_rest_learn_their_place() -> None:
    runs = [waiting("r1", "alice", 0, size=2), waiting("r2", "bob", 1, size=2), waiting("r3", "carol", 2, size=1)]
    decided = plan(runs, [], Capacity({"a": 3}, max_active=8), first_allowed)
    assert decided.started == {"r1": ("a", "a")}
    # r3 would fit, but it does not overtake r2: a large run is never starved by small ones.
    assert decided.positions == {"r2": 1, "r3": 2}


def test_the_stages_room_bounds_the_runs_driven_at_once() -> None:
    runs = [waiting(f"r{i}", f"user{i}", i) for i in range(4)]
    decided = plan(runs, [Holding("old", "x", ("a",))], Capacity({"a": 100}, max_active=3), first_allowed)
    assert list(decided.started) == ["r0", "r1"]
    assert decided.positions == {"r2": 1, "r3": 2}


def test_a_run_larger_than_the_whole_capacity_runs_alone() -> None:
    big = waiting("big", "alice", 0, size=5)
    assert plan([big], [], Capacity({"a": 2}, max_active=8), first_allowed).started == {"big": ("a",) * 5}
    busy = plan([big], [Holding("small", "bob", ("a",))], Capacity({"a": 2}, max_active=8), first_allowed)
    assert busy.started == {} and busy.positions == {"big": 1}


def test_slots_are_counted_per_instance() -> None:
    on_b = waiting("on-b", "bob", 1, allowed=("b",))
    held = [Holding("h1", "alice", ("a",)), Holding("h2", "alice", ("a",))]
    decided = plan([on_b], held, Capacity({"a": 2, "b": 1}, max_active=8), first_allowed)
    assert decided.started == {"on-b": ("b",)}


def test_proposals_see_the_slots_taken_before_them_in_the_same_decision() -> None:
    seen: list[int] = []

    def propose(run: Waiting, offset: int) -> tuple[str, ...]:
        seen.append(offset)
        return ("a",) * run.size

    runs = [waiting("r1", "a", 0, size=2), waiting("r2", "b", 1, size=3), waiting("r3", "c", 2, size=1)]
    plan(runs, [], Capacity({"a": 10}, max_active=8), propose)
    assert seen == [0, 2, 5]
