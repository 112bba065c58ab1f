"""Reputation of instances and models: what each run and each person's judgement says about them.

Every observation is an event (a weighted success and/or failure for one instance and its model)
stored with the run it came from; a reputation is the sum of a source's events, turned into a
vote multiplier by ``swarmlib.reputation_multiplier``. Keeping events rather than running totals
lets a user replace their feedback (its events are swapped, not added twice) and lets a report
say how a reputation moved since a date. The signals and their weights: docs/selection.md
("Reputation").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from swarm.v1 import orchestrator_pb2 as pb
from swarmlib import REPUTATION_SIGNAL_WEIGHTS, reputation_mean, reputation_multiplier

INSTANCE = pb.REPUTATION_SCOPE_INSTANCE
MODEL = pb.REPUTATION_SCOPE_MODEL


@dataclass(frozen=True)
class Event:
    """One observation about the instance (and model) that produced a candidate."""

    instance: str
    model: str
    signal: str
    successes: float
    failures: float


@dataclass(frozen=True)
class Tally:
    """A source's summed events."""

    successes: float = 0.0
    failures: float = 0.0
    observations: int = 0

    @property
    def multiplier(self) -> float:
        return reputation_multiplier(self.successes, self.failures)

    @property
    def mean(self) -> float:
        return reputation_mean(self.successes, self.failures)


Key = tuple[int, str]
Snapshot = Mapping[Key, Tally]


def multiplier_for(snapshot: Snapshot, instance: str, model: str) -> float:
    """The instance's multiplier if it has history, else its model's, else exactly 1.0.

    An instance is a model at one temperature and seed behind one endpoint, the most specific
    thing the swarm can learn about; a new instance of a known model starts from the model's.
    """
    for key in ((INSTANCE, instance), (MODEL, model)):
        tally = snapshot.get(key)
        if key[1] and tally is not None and tally.observations:
            return tally.multiplier
    return 1.0


def _event(candidate: pb.Candidate, signal: str, good: float) -> Event:
    """``good`` in [0, 1] of the signal's weight is a success, the rest a failure."""
    weight = REPUTATION_SIGNAL_WEIGHTS[signal]
    return Event(candidate.instance, candidate.model, signal, weight * good, weight * (1.0 - good))


def _selected(run: pb.Run) -> pb.Candidate | None:
    """The swarm candidate the run chose: the final answer, or the one a kept refinement improved."""
    swarm = [c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM and c.rank > 0]
    chosen = next((c for c in swarm if c.id == run.final.candidate_id), None)
    return chosen or min(swarm, key=lambda c: c.rank, default=None)


def _same_behaviour(a: pb.Candidate, b: pb.Candidate, any_behaviour: bool) -> bool:
    if a.id == b.id:
        return True
    if a.behaviour and b.behaviour:
        return a.behaviour == b.behaviour
    return not any_behaviour and a.cluster_id >= 0 and a.cluster_id == b.cluster_id


def assessment_events(run: pb.Run) -> list[Event]:
    """What a ranked run says about each swarm candidate's source (empty for a run without an answer)."""
    if not run.HasField("final"):
        return []
    swarm = [c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM and c.instance]
    events = [
        _event(c, "visible_tests", float(c.scores.tests_passed == c.scores.tests_total))
        for c in swarm
        if c.scores.tests_total
    ]
    selected = _selected(run)
    if selected is not None and len(swarm) >= 2:
        any_behaviour = any(c.behaviour for c in swarm)
        events += [_event(c, "selected_cluster", float(_same_behaviour(c, selected, any_behaviour))) for c in swarm]
    return events


def _final(run: pb.Run) -> pb.Candidate | None:
    return next((c for c in run.candidates if c.id == run.final.candidate_id), None)


def feedback_events(run: pb.Run, rating: int, preferred_id: str) -> list[Event]:
    """What one user's feedback says: the rating about the final answer, the preference about both."""
    final = _final(run)
    events = []
    if final is not None and final.instance:
        events.append(_event(final, "rating", (rating - 1) / 4.0))
    preferred = next((c for c in run.candidates if c.id == preferred_id), None) if preferred_id else None
    if preferred is not None and preferred.instance:
        events.append(_event(preferred, "preferred", 1.0))
        if final is not None and final.instance and final.instance != preferred.instance:
            events.append(_event(final, "preferred", 0.0))
    return events


def approval_events(run: pb.Run, approved: bool) -> list[Event]:
    """An approver's verdict on the final answer."""
    final = _final(run)
    return [_event(final, "approval", float(approved))] if final is not None and final.instance else []


def touched(events: Sequence[Event]) -> list[Key]:
    """The sources some events are about, instances first, in a stable order."""
    keys = {(INSTANCE, e.instance) for e in events if e.instance} | {(MODEL, e.model) for e in events if e.model}
    return sorted(keys)


def entry(key: Key, now: Tally, before: Tally) -> pb.Reputation:
    """A source's reputation now, with its multiplier at the reference point."""
    scope, name = key
    return pb.Reputation(
        scope=scope,  # type: ignore[arg-type]
        name=name,
        successes=now.successes,
        failures=now.failures,
        mean=now.mean,
        multiplier=now.multiplier,
        multiplier_before=before.multiplier,
        observations=now.observations,
    )
