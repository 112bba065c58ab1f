"""The quality bench: draws, scoring script, CodeT selection, stage timing, a run without reference
tests, and runs kept for inspection."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from swarm.v1 import common_pb2, orchestrator_pb2 as pb
from swarm_bench.data import DataError, load_records
from swarm_bench.quality import run_bench, stage_seconds
from swarm_bench.quality_options import BenchOptions, options_from_args
from swarm_bench.quality_scoring import codet_choice, draw, scoring_program
from swarm_bench.quality_summary import RunOutcome, report, summarise, summary_dict
from swarm_cli.main import build_parser
from swarm_orchestrator.reputation import MODEL
from swarm_orchestrator.store import RunStore
from tests.bench import data


def test_draws_are_seeded_without_replacement(tmp_path: Path) -> None:
    record = load_records(data.write(tmp_path / "d.jsonl.gz", data.records(False)))[0]
    assert sorted(draw(record, 2, 7, 0)) != [] and len(set(draw(record, 2, 7, 0))) == 2
    assert draw(record, 2, 7, 0) == draw(record, 2, 7, 0)
    assert {tuple(draw(record, 2, s, r)) for s in range(5) for r in range(3)} != {tuple(draw(record, 2, 7, 0))}
    assert draw(record, None, 7, 0) == [0, 1, 2] == draw(record, 10, 7, 0)


def test_scoring_program_calls_check_only_when_the_reference_does_not() -> None:
    assert scoring_program("P", data.ADD_REFERENCE, "add").rstrip().endswith("check(add)")
    assert scoring_program("P", data.EVEN_REFERENCE, "is_even").count("check(is_even)") == 1
    assert scoring_program("P", "assert f(1) == 2\n", "f") == "P\nassert f(1) == 2\n"


def _candidate(cid: str, passed: list[str], failed: list[str]) -> pb.Candidate:
    tests = [common_pb2.TestResult(name=n, passed=True, origin=common_pb2.TEST_ORIGIN_GENERATED) for n in passed]
    tests += [common_pb2.TestResult(name=n, passed=False, origin=common_pb2.TEST_ORIGIN_GENERATED) for n in failed]
    tests.append(common_pb2.TestResult(name="visible", passed=True, origin=common_pb2.TEST_ORIGIN_VISIBLE))
    return pb.Candidate(id=cid, origin=pb.CANDIDATE_ORIGIN_SWARM, tests=tests)


def test_codet_picks_the_cluster_with_the_most_agreement() -> None:
    run = pb.Run(
        candidates=[
            _candidate("c1", ["a", "b", "c"], []),  # alone: 1 x 3
            _candidate("c2", ["a"], ["b", "c"]),  # with c3: 2 x 1
            _candidate("c3", ["a"], ["b", "c"]),
            _candidate("c4", ["a", "b"], ["c"]),  # with c5: 2 x 2 = 4, the best
            _candidate("c5", ["a", "b"], ["c"]),
        ]
    )
    chosen = codet_choice(run)
    assert chosen is not None and chosen.id == "c4"
    assert codet_choice(pb.Run(candidates=[pb.Candidate(id="c1", origin=pb.CANDIDATE_ORIGIN_SWARM)])) is None


def _event(kind: str, seconds: float) -> pb.RunSwarmResponse:
    event = pb.RunSwarmResponse(time=Timestamp(seconds=int(seconds), nanos=int(seconds % 1 * 1e9)))
    getattr(event, kind).SetInParent()
    return event


def test_stage_time_runs_from_the_last_answer_to_the_last_stage_in_either_order() -> None:
    collate_first = [_event("instance_finished", 1), _event("instance_finished", 2), _event("collated", 3)]
    assert stage_seconds([*collate_first, _event("assessed", 4.5), _event("done", 9)]) == 2.5
    assess_first = [_event("instance_finished", 2), _event("assessed", 3), _event("collated", 3.25)]
    assert stage_seconds(assess_first) == 1.25
    assert stage_seconds([_event("instance_finished", 2)]) is None


def test_cli_options() -> None:
    args = build_parser().parse_args(
        ["bench", "quality", "--data", "d.gz", "--per-task", "all", "--out", "o.jsonl", "--tasks", "A/1, A/2"]
    )
    options = options_from_args(args)
    assert options.per_task is None and options.tasks == ("A/1", "A/2") and not options.refine
    assert options.repeats == 1 and options.limit is None and options.db is None
    assert options.reputation
    args = build_parser().parse_args(["bench", "quality", "--data", "d.gz", "--out", "o.jsonl", "--db", "runs.db"])
    assert options_from_args(args).db == Path("runs.db") and options_from_args(args).visible_tests
    args = build_parser().parse_args(["bench", "quality", "--data", "d", "--out", "o", "--visible-tests", "off"])
    assert not options_from_args(args).visible_tests
    args = build_parser().parse_args(["bench", "quality", "--data", "d.gz", "--out", "o.jsonl", "--reputation", "off"])
    assert not options_from_args(args).reputation


def test_visible_tests_are_read_from_the_data(tmp_path: Path) -> None:
    rows = data.records(with_reference=False, with_visible=True)
    records = load_records(data.write(tmp_path / "d.jsonl.gz", rows))
    assert records[0].visible_tests == (data.ADD_VISIBLE,) and records[1].visible_tests == ()
    rows[0]["visible_tests"] = "assert add(1, 1) == 2"
    with pytest.raises(DataError, match="visible_tests must be a list"):
        load_records(data.write(tmp_path / "bad.jsonl.gz", rows))


def _outcome(task: str, drawn: list[str], passed: list[bool], swarm: bool) -> RunOutcome:
    return RunOutcome(task, 0, "code", False, 0.0, drawn[0], drawn=drawn, passed=swarm, drawn_passed=passed)


def test_the_summary_names_the_best_single_source(tmp_path: Path) -> None:
    outcomes = [
        _outcome("T/0", ["a/Direct#0", "b/CoT#0", "b/CoT#1"], [True, True, False], True),
        _outcome("T/1", ["a/Direct#0", "b/CoT#0"], [False, True], True),
        _outcome("T/2", ["a/Direct#3", "b/CoT#0"], [True, False], False),
    ]
    summary = summarise(outcomes)
    # Over its drawn candidates: a/Direct 2 of 3, b/CoT 2 of 4.
    assert summary.by_source == {"a/Direct": 2 / 3, "b/CoT": 0.5}
    assert summary.by_source_candidates == {"a/Direct": 3, "b/CoT": 4}
    assert summary.best_source == "a/Direct" and summary.best_source_rate == 2 / 3
    assert summary_dict(summary)["best_source"] == "a/Direct"
    printed = io.StringIO()
    report(summary, BenchOptions(data=Path("d.jsonl"), out=Path("o.jsonl")), printed)
    assert "best source   0.667   (a/Direct, over its 3 drawn candidates; 2 sources)" in printed.getvalue()
    assert "per source    a/Direct 0.667, b/CoT 0.500" in printed.getvalue()
    assert summarise([]).best_source is None


async def test_bench_without_reference_tests_writes_selections(tmp_path: Path) -> None:
    path = data.write(tmp_path / "tiny.jsonl.gz", data.records(with_reference=False))
    options = BenchOptions(data=path, out=tmp_path / "out.jsonl", per_task=3, repeats=2, seed=3)
    summary = await run_bench(options, log=None)
    lines = [json.loads(line) for line in options.out.read_text().splitlines()]
    assert [(line["task_id"], line["repeat"]) for line in lines] == [
        ("Tiny/0", 0),
        ("Tiny/0", 1),
        ("Tiny/1", 0),
        ("Tiny/1", 1),
    ]
    for line in lines:
        assert {"task_id", "repeat", "code", "consensus", "confidence", "source"} <= set(line)
        assert "passed" not in line and line["source"] in line["drawn"] and line["code"]
    assert summary.scored_runs == 0 and summary.failed_runs == 0 and summary.median_stage_s is not None
    printed = io.StringIO()
    report(summary, options, printed)
    text = printed.getvalue()
    assert "consensus coverage" in text and "timings" in text
    assert "random pick" not in text and "swarm " not in text


async def test_runs_are_kept_in_the_db_file_when_asked(tmp_path: Path) -> None:
    path = data.write(tmp_path / "tiny.jsonl.gz", data.records(with_reference=False))
    db = tmp_path / "kept" / "runs.db"
    # Two draws of the add task, one after the other: as many runs as the two tasks once.
    options = BenchOptions(data=path, out=tmp_path / "out.jsonl", per_task=3, repeats=2, tasks=("Tiny/0",), db=db)
    await run_bench(options, log=None)
    lines = [json.loads(line) for line in options.out.read_text().splitlines()]
    store = await RunStore.open(f"sqlite+aiosqlite:///{db}")
    try:
        runs = [await store.get_run(line["run_id"]) for line in lines]
        for run, line in zip(runs, lines, strict=True):
            assert len([c for c in run.candidates if c.rank]) == 3 and run.final.code == line["code"]
        # In task order, per model (the one the replay server names): the first run knows nothing,
        # the second weighs its votes by what the first one's visible test said of model m/t0.8.
        assert {c.reputation for c in runs[0].candidates if c.rank} == {1.0}
        before = await store.reputation(None, runs[1].created_at.ToDatetime(tzinfo=dt.UTC))
        learned = before[(MODEL, "m/t0.8")]  # the add task: one answer fails the visible example
        assert learned.observations > 0 and learned.multiplier > 1.0
        assert [c.reputation for c in runs[1].candidates if c.rank] == [pytest.approx(learned.multiplier)] * 3
    finally:
        await store.close()

    with pytest.raises(DataError, match="exists: its runs would seed the reputation"):
        await run_bench(BenchOptions(data=path, out=tmp_path / "again.jsonl", db=db), log=None)

    with pytest.raises(DataError, match="is a directory"):
        await run_bench(BenchOptions(data=path, out=tmp_path / "again.jsonl", db=tmp_path), log=None)
    assert not (tmp_path / "again.jsonl").exists(), "nothing is written for a refused run"
