"""Which evidence moves a reputation and whose history weighs a vote: pure rules, no service."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarm_orchestrator.config import OrchestratorConfig
from swarm_orchestrator.reputation import INSTANCE, MODEL, Event, Key, Tally, assessment_events, multiplier_for, stable
from swarm_orchestrator.store import RunStore
from swarmlib import ConfigError, reputation_multiplier


def candidate(
    cid: str,
    *,
    model: str = "m",
    visible: tuple[int, int] = (0, 0),
    generated: tuple[int, int] = (0, 0),
    behaviour: str = "",
    origin: pb.CandidateOrigin = pb.CANDIDATE_ORIGIN_SWARM,
) -> pb.Candidate:
    scores = common_pb2.Scores(
        tests_passed=visible[0], tests_total=visible[1], generated_passed=generated[0], generated_total=generated[1]
    )
    return pb.Candidate(
        id=cid, origin=origin, instance=f"i-{cid}", model=model, behaviour=behaviour, cluster_id=-1, scores=scores
    )


def run_of(*candidates: pb.Candidate, final: str = "c1") -> pb.Run:
    run = pb.Run(id="r1", candidates=list(candidates))
    run.final.candidate_id = final
    return run


def by_signal(events: list[Event], signal: str) -> dict[str, tuple[float, float]]:
    return {e.instance: (e.successes, e.failures) for e in events if e.signal == signal}


def test_visible_and_generated_tests_move_each_source_by_what_it_passed() -> None:
    run = run_of(
        candidate("c1", visible=(2, 2), generated=(3, 4), behaviour="A"),
        candidate("c2", visible=(1, 2), generated=(1, 4), behaviour="B"),
    )
    events = assessment_events(run)
    assert by_signal(events, "visible_tests") == {"i-c1": (1.0, 0.0), "i-c2": (0.0, 1.0)}
    # The swarm's own tests count half (REPUTATION_SIGNAL_WEIGHTS), in proportion to those passed.
    assert by_signal(events, "generated_tests") == {"i-c1": (0.375, 0.125), "i-c2": (0.125, 0.375)}
    assert by_signal(events, "agreement") == {}  # two answers: no majority to agree with


def test_agreement_counts_a_strict_majority_and_never_the_chosen_answer() -> None:
    majority = [candidate(f"c{i}", behaviour="A") for i in (1, 2, 3)]
    outlier = candidate("c4", behaviour="B")
    # The run chose the outlier (say, a prior favoured it): agreement is still with the majority.
    events = assessment_events(run_of(*majority, outlier, final="c4"))
    assert by_signal(events, "agreement") == {"i-c1": (1, 0), "i-c2": (1, 0), "i-c3": (1, 0), "i-c4": (0, 1)}
    split = [candidate("c1", behaviour="A"), candidate("c2", behaviour="A"), candidate("c3", behaviour="B")]
    split.append(candidate("c4", behaviour="C"))
    assert by_signal(assessment_events(run_of(*split)), "agreement") == {}  # 2 of 4 is not a majority
    alone = [candidate(f"c{i}") for i in (1, 2, 3)]  # no signature, no cluster: nobody agrees
    assert by_signal(assessment_events(run_of(*alone)), "agreement") == {}


def test_a_run_teaches_only_where_its_answers_differ() -> None:
    same = [candidate("c1", visible=(2, 2), generated=(1, 2)), candidate("c2", visible=(2, 2), generated=(1, 2))]
    assert assessment_events(run_of(*same)) == []  # all did equally well: nothing to tell apart
    unanimous = [candidate(f"c{i}", behaviour="A") for i in (1, 2, 3)]
    assert assessment_events(run_of(*unanimous)) == []


def test_only_swarm_answers_of_a_run_with_an_answer_teach() -> None:
    refined = candidate("c9", visible=(0, 2), origin=pb.CANDIDATE_ORIGIN_REFINED)
    events = assessment_events(run_of(candidate("c1", visible=(2, 2)), candidate("c2", visible=(1, 2)), refined))
    assert [e.instance for e in events] == ["i-c1", "i-c2"]
    assert assessment_events(pb.Run(candidates=[candidate("c1", visible=(2, 2)), candidate("c2")])) == []


def test_an_instance_is_stable_while_its_history_names_only_the_answering_model() -> None:
    assert stable(Tally(1, 0, 1, ("m",)), "m")
    assert not stable(Tally(1, 0, 1, ("m",)), "other")
    assert not stable(Tally(1, 0, 1, ("m", "other")), "m")
    assert stable(Tally(1, 0, 1, ("m", "other")), "")  # nothing named: the instance is all there is


def test_the_multiplier_comes_from_a_stable_instance_else_the_model() -> None:
    good, bad = Tally(6, 0, 6, ("m",)), Tally(0, 6, 6)
    snapshot: dict[Key, Tally] = {(INSTANCE, "i1"): good, (MODEL, "m"): bad, (MODEL, "n"): Tally(3, 3, 6)}
    assert multiplier_for(snapshot, "i1", "m") == good.multiplier > 1.0
    assert multiplier_for(snapshot, "i1", "m", "model") == bad.multiplier < 1.0
    # The same endpoint answering with another model (a gateway, a replay instance): the model's.
    assert multiplier_for(snapshot, "i1", "n") == reputation_multiplier(3, 3) == 1.0
    mixed: dict[Key, Tally] = {(INSTANCE, "i1"): Tally(6, 0, 6, ("m", "n")), (MODEL, "m"): bad}
    assert multiplier_for(mixed, "i1", "m") == bad.multiplier
    assert multiplier_for(snapshot, "new", "unknown") == 1.0


def test_the_scope_is_read_from_the_environment() -> None:
    env = {"SWARM_INSTANCES": '[{"name": "i1", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]'}
    assert OrchestratorConfig.from_env(env).reputation_scope == "instance"
    assert OrchestratorConfig.from_env({**env, "SWARM_REPUTATION_SCOPE": "Model"}).reputation_scope == "model"
    with pytest.raises(ConfigError, match="SWARM_REPUTATION_SCOPE"):
        OrchestratorConfig.from_env({**env, "SWARM_REPUTATION_SCOPE": "tenant"})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[RunStore]:
    store = await RunStore.open(f"sqlite+aiosqlite:///{tmp_path / 'swarm.db'}")
    try:
        yield store
    finally:
        await store.close()


async def test_the_store_names_the_models_each_instance_answered_with(store: RunStore) -> None:
    for run_id, model, good in (("r1", "m", 1), ("r2", "n", 0)):
        run = run_of(candidate("c1", model=model, visible=(good, 1)), candidate("c2", model="o", visible=(1 - good, 1)))
        run.id = run_id
        run.status = pb.RUN_STATUS_RUNNING
        run.created_at.FromDatetime(dt.datetime.now(dt.UTC))
        await store.create_run(run)
        run.status = pb.RUN_STATUS_SUCCEEDED
        assert await store.finish_run(run, assessment_events(run))
    snapshot = await store.reputation(None)
    assert snapshot[(INSTANCE, "i-c1")] == Tally(1.0, 1.0, 2, ("m", "n"))
    assert snapshot[(MODEL, "m")] == Tally(1.0, 0.0, 1) and snapshot[(MODEL, "n")] == Tally(0.0, 1.0, 1)
    assert snapshot[(INSTANCE, "i-c2")] == Tally(1.0, 1.0, 2, ("o",)) and snapshot[(MODEL, "o")] == Tally(1.0, 1.0, 2)
    assert multiplier_for(snapshot, "i-c1", "m") == snapshot[(MODEL, "m")].multiplier
