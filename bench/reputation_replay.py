"""What would the reputation prior have chosen on runs a `swarm bench quality` row kept? (offline)

Usage: .venv/bin/python bench/reputation_replay.py SELECTIONS.jsonl RUNS.db [--scope model|instance]

Reads the runs of one bench row (its ``--out`` selections and its ``--db`` runs, best made with
``--reputation off``) in the order they ran, and ranks each run's swarm candidates again with the
product's own ``ranking.rank``, first with every multiplier 1.0, then with the multipliers the
runs before it taught (``reputation.assessment_events`` of each re-ranked run, summed per model or
per instance like the store does). Each choice is scored with the hidden-test outcome the bench
recorded for that drawn candidate (``drawn_passed``); nothing is executed again, so a whole row
replays in seconds. It prints both pass rates, the tasks whose outcome moved, and the multipliers
learned. Consensus is not replayed (it needs the collation): the bench's own runs report it.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from swarm.v1 import orchestrator_pb2 as pb
from swarm_orchestrator.ranking import rank
from swarm_orchestrator.reputation import INSTANCE, MODEL, Key, Tally, assessment_events, multiplier_for


def _learn(tallies: dict[Key, Tally], run: pb.Run) -> None:
    for event in assessment_events(run):
        for key, model in (((INSTANCE, event.instance), event.model), ((MODEL, event.model), "")):
            now = tallies.get(key, Tally())
            models = tuple(sorted({*now.models, model})) if model else now.models
            tallies[key] = Tally(
                now.successes + event.successes, now.failures + event.failures, now.observations + 1, models
            )


def _passed(selection: dict[str, Any], candidate: pb.Candidate) -> bool:
    match = re.fullmatch(r"replay-(\d+)", candidate.instance)
    if match is None:
        raise SystemExit(f"{selection['task_id']}: candidate {candidate.id} is not a replay instance's")
    drawn = selection["drawn_passed"]
    return bool(drawn[int(match.group(1)) % len(drawn)])


def replay(selections: Path, db: Path, scope: str) -> int:
    by_run = {row["run_id"]: row for row in map(json.loads, selections.read_text().splitlines())}
    if any(row.get("drawn_passed") is None for row in by_run.values()):
        raise SystemExit(f"{selections}: unscored selections (the data has no reference tests)")
    tallies: dict[Key, Tally] = {}
    alone = learned = runs = 0
    moved: list[str] = []
    with sqlite3.connect(db) as connection:
        rows = connection.execute("select id, document from runs order by created_at, id").fetchall()
    for run_id, document in rows:
        selection = by_run.get(run_id)
        if selection is None or not document:
            continue
        run = json_format.Parse(document, pb.Run(), ignore_unknown_fields=True)
        swarm = [c for c in run.candidates if c.origin == pb.CANDIDATE_ORIGIN_SWARM]
        if not swarm:
            continue
        plain = rank(swarm).best
        ranking = rank(swarm, [multiplier_for(tallies, c.instance, c.model, scope) for c in swarm])
        before, after = _passed(selection, plain), _passed(selection, ranking.best)
        runs, alone, learned = runs + 1, alone + before, learned + after
        if before != after:
            moved.append(
                f"  {selection['task_id']} #{selection['repeat']}: {'pass' if before else 'fail'} -> "
                f"{'pass' if after else 'fail'} ({ranking.best.model})"
            )
        taught = pb.Run()
        taught.CopyFrom(run)
        del taught.candidates[:]
        taught.candidates.extend(ranking.candidates)
        taught.final.candidate_id = ranking.best.id
        _learn(tallies, taught)
    if not runs:
        raise SystemExit(f"no run of {selections} is in {db}")
    print(f"{runs} runs, replayed in order (scope {scope})")
    print(f"  reputation off  {alone / runs:.3f}  ({alone} pass)")
    print(f"  reputation on   {learned / runs:.3f}  ({learned} pass)")
    print(f"moved: {len(moved)}", *moved, sep="\n")
    print("learned multipliers (model: multiplier, observations):")
    for (key_scope, name), tally in sorted(tallies.items()):
        if key_scope == MODEL:
            print(f"  {name}: {tally.multiplier:.3f}, {tally.observations}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("selections", type=Path, help="the row's --out file")
    parser.add_argument("runs", type=Path, help="the row's --db file")
    parser.add_argument("--scope", choices=("model", "instance"), default="model", help="as SWARM_REPUTATION_SCOPE")
    args = parser.parse_args(argv)
    return replay(args.selections, args.runs, args.scope)


if __name__ == "__main__":
    sys.exit(main())
