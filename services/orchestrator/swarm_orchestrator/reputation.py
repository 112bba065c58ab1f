"""Reputation of instances and models: what each run and each person's judgement says about them.

Every observation is an event (a weighted success and/or failure for one instance and its model)
stored with the run it came from; a reputation is the sum of a source's events, turned into a
vote multiplier by ``swarmlib.reputation_multiplier``. Keeping events rather than running totals
lets a user replace their feedback (its events are swapped, not added twice) and lets a report
say how a reputation moved since a date. The signals and their weights: docs/selection.md
("Reputation").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from swarm.v1 import orchestrator_pb2 as pb
from swarmlib import REPUTATION_SIGNAL_WEIGHTS, reputation_mean, reputation_multiplier

from .ranking import cluster_keys

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
    """A source's summed events; for an instance, also the models its events name."""

    successes: float = 0.0
    failures: float = 0.0
    observations: int = 0
    models: tuple[str, ...] = ()

    @property
    def multiplier(self) -> float:
        return reputation_multiplier(self.successes, self.failures)

    @property
    def mean(self) -> float:
        return reputation_mean(self.successes, self.failures)


Key = tuple[int, str]
Snapshot = Mapping[Key, Tally]


def stable(tally: Tally, model: str) -> bool:
    """Whether an instance's history is about ``model``: every event it has names that model.

    An instance behind a gateway, or one that serves different sources from one endpoint (as the
    bench's replay instances do), answers with several models; its history then mixes them and
    says nothing about the model answering now, so the model's own history is used instead.
    """
    return not model or tally.models in ((), (model,))


def multiplier_for(snapshot: Snapshot, instance: str, model: str, scope: str = "instance") -> float:
    """The instance's multiplier if it has a stable history (``stable``), else its model's, else 1.0.

    An instance is a model at one temperature and seed behind one endpoint, the most specific
    thing the swarm can learn about; a new instance of a known model starts from the model's.
    With ``scope`` "model" only the model's history counts (instances are interchangeable).
    """
    instance_tally = snapshot.get((INSTANCE, instance)) if instance and scope == "instance" else None
    if instance_tally is not None and instance_tally.observations and stable(instance_tally, model):
        return instance_tally.multiplier
    tally = snapshot.get((MODEL, model)) if model else None
    return tally.multiplier if tally is not None and tally.observations else 1.0


def _event(candidate: pb.Candidate, signal: str, good: float) -> Event:
    """``good`` in [0, 1] of the signal's weight is a success, the rest a failure."""
    weight = REPUTATION_SIGNAL_WEIGHTS[signal]
    return Event(candidate.instance, candidate.model, signal, weight * good, weight * (1.0 - good))


def _majority_events(swarm: Sequence[pb.Candidate]) -> list[Event]:
    """``agreement``: in a run of three answers or more where a strict majority, not all, behaves
    alike, each answer is a success if it is in that majority and a failure if not.

    Agreement is counted by answers, not by reputation-weighted votes, and never from the answer
    the run chose, so the prior cannot feed itself: what the swarm chose because of a reputation
    is not evidence for that reputation.
    """
    if len(swarm) < 3:
        return []
    keys = cluster_keys(swarm)  # behaviour signatures, else the collator's clusters
    top, size = Counter(keys).most_common(1)[0]
    if 2 * size <= len(swarm) or size == len(swarm):
        return []
    return [_event(c, "agreement", float(key == top)) for c, key in zip(swarm, keys, strict=True)]


def _telling(events: list[Event]) -> list[Event]:
    """The events of one signal if they tell sources apart, else none.

    A reputation only ever compares the sources of one run (vote weights are ratios), so a run in
    which every answer did equally well or equally badly says nothing it can use; counting it
    would only pull every source's mean towards the same value and blur the differences.
    """
    return events if len({e.successes for e in events}) > 1 else []


def assessment_events(run: pb.Run) -> list[Event]:
    """What a ranked run's executed evidence says about each swarm candidate's source (empty for a
    run without an answer): the visible tests it passed, the generated tests it passed, and whether
    it is in a strict majority; each only where the run's answers differ in it (``_telling``), and
    never the answer the run chose (``_majority_events``)."""
    if not run.HasField("final"):
        return []
    swarm = [c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM and c.instance]
    visible = [
        _event(c, "visible_tests", float(c.scores.tests_passed == c.scores.tests_total))
        for c in swarm
        if c.scores.tests_total
    ]
    generated = [
        _event(c, "generated_tests", c.scores.generated_passed / c.scores.generated_total)
        for c in swarm
        if c.scores.generated_total
    ]
    return _telling(visible) + _telling(generated) + _majority_events(swarm)


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
