"""Which waiting runs start now, and in what order the others will: the rules of the queue at the
door, as a pure function of the queue and the capacity (docs/queue.md).

Capacity is counted in instance slots, the concurrent requests each instance's server takes: a
run holds one slot per answer it asks for (its swarm size) plus one per test writer, on the
instances it will call, from the moment it starts until it ends. A run starts when every slot it
needs is free and fewer than ``max_active`` runs are being driven (the stages' room), or when
nothing else runs (a run larger than the whole capacity still runs, alone).

Fairness is between callers, by turns: a run joins with the turn after its caller's latest run in
the queue, but never before the current turn (the latest turn among the runs being driven). Runs
start in turn order, the oldest first within a turn; so one caller's burst of a hundred takes
turns 0..99 and a run another caller sends meanwhile takes the current turn and goes ahead of the
rest of the burst, and no caller is starved either, because new runs never join behind it in an
earlier turn. The order is strict: when the next run does not fit, nothing behind it overtakes it,
so a large run is never starved by a stream of small ones.
"""

from __future__ import annotations

import collections
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Waiting:
    """A run in the queue: who asked, and the instances it may use."""

    run_id: str
    caller: str
    size: int
    allowed: tuple[str, ...]
    enqueued_at: dt.datetime
    turn: int = 0


@dataclass(frozen=True)
class Holding:
    """A run being driven and the instance slots it holds."""

    run_id: str
    caller: str
    slots: tuple[str, ...]
    turn: int = 0


@dataclass(frozen=True)
class Capacity:
    """Slots per instance, and how many runs the stages have room for."""

    slots: Mapping[str, int]
    max_active: int


# The slots a waiting run would take if it started now (answers first, then test writers), given
# how many answer slots the runs started before it in this plan took; the pool proposes them in
# its own round-robin order, so that admission does not change which instance answers which slot.
Propose = Callable[[Waiting, int], tuple[str, ...]]


@dataclass(frozen=True)
class Admitted:
    """A run the queue started: the instance of each answer slot, and how long it waited."""

    assignment: tuple[str, ...]
    waited_ms: float


@dataclass(frozen=True)
class Plan:
    """The runs that start now with their slots, and the place of every run still waiting."""

    started: dict[str, tuple[str, ...]]
    positions: dict[str, int]


def next_turn(caller: str, waiting: Sequence[Waiting], holding: Sequence[Holding]) -> int:
    """The turn of a run ``caller`` sends now (see the module docstring)."""
    current = max((run.turn for run in holding), default=0)
    mine = [run.turn for run in waiting if run.caller == caller] + [run.turn for run in holding if run.caller == caller]
    latest = max(mine, default=-1)
    return max(current, latest + 1)


def fair_order(waiting: Sequence[Waiting]) -> list[Waiting]:
    """Every waiting run in the order it will start: by turn, then by arrival."""
    return sorted(waiting, key=lambda run: (run.turn, run.enqueued_at, run.run_id))


def plan(waiting: Sequence[Waiting], holding: Sequence[Holding], capacity: Capacity, propose: Propose) -> Plan:
    """Start what fits, in ``fair_order``; ``propose`` gives a run's slots."""
    used = collections.Counter(slot for run in holding for slot in run.slots)
    active = len(holding)
    offset = 0
    started: dict[str, tuple[str, ...]] = {}
    order = fair_order(waiting)
    for run in order:
        if active >= capacity.max_active:
            break
        slots = propose(run, offset)
        wanted = collections.Counter(slots)
        fits = all(used[name] + count <= capacity.slots.get(name, 0) for name, count in wanted.items())
        if not fits and active > 0:
            break
        started[run.run_id] = slots
        used.update(wanted)
        active += 1
        offset += run.size
    rest = [run.run_id for run in order if run.run_id not in started]
    return Plan(started, {run_id: place for place, run_id in enumerate(rest, start=1)})
