"""Do two runs of `swarm bench quality` select the same answers? (A refactoring must not move them.)

Usage: .venv/bin/python bench/compare_selections.py BEFORE.jsonl AFTER.jsonl [--runs AFTER.db]

Compares the selection files task by task on everything but what names or times one run (the
run id, the timings), and prints how many tasks differ and in which fields. Two runs of the same
code can differ where candidates tie: the ranking's last tie-break is the answer's latency, which
no replay fixes. With ``--runs`` (the ``--db`` file the AFTER run kept), every difference is
checked against the stored run: it is a **tie** when the candidate BEFORE chose had the same
ranking score and visible tests as the one AFTER chose (so only latency parted them), and for
CodeT's pick when both picks passed the same generated tests. Exit status: 0 when every
selection agrees or differs only by such ties, 1 otherwise, 2 when the files do not describe the
same tasks.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from swarm.v1 import common_pb2, orchestrator_pb2 as pb

# Fields that name or time one run, not what it selected.
VOLATILE = frozenset({"run_id", "wall_s", "stage_s"})
# Fields that follow from which candidate was chosen (the swarm's pick, CodeT's pick).
CHOICE = frozenset({"source", "code"})
CODET = frozenset({"codet_source"})

Row = dict[str, Any]


def selections(path: Path) -> dict[tuple[str, int], Row]:
    rows: dict[tuple[str, int], Row] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                rows[(row["task_id"], row["repeat"])] = row
    return rows


def stored_runs(path: Path) -> dict[str, pb.Run]:
    """Every finished run in a bench's SQLite file, by id."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT id, document FROM runs WHERE document != ''").fetchall()
    return {run_id: json_format.Parse(document, pb.Run(), ignore_unknown_fields=True) for run_id, document in rows}


def _candidate(run: pb.Run, drawn: list[str], source: str | None) -> pb.Candidate | None:
    """The run's candidate of a recorded source: replay instance k served the k-th drawn source."""
    if source is None or source not in drawn:
        return None
    name = f"replay-{drawn.index(source)}"
    return next((c for c in run.candidates if c.instance == name), None)


def _tied(a: pb.Candidate | None, b: pb.Candidate | None) -> bool:
    return (
        a is not None
        and b is not None
        and (a.scores.overall, a.scores.tests_passed)
        == (
            b.scores.overall,
            b.scores.tests_passed,
        )
    )


def _same_generated(a: pb.Candidate | None, b: pb.Candidate | None) -> bool:
    def passed(c: pb.Candidate) -> frozenset[str]:
        return frozenset(t.name for t in c.tests if t.origin == common_pb2.TEST_ORIGIN_GENERATED and t.passed)

    return a is not None and b is not None and passed(a) == passed(b)


def explained(before: Row, after: Row, changed: set[str], run: pb.Run | None) -> bool:
    """Whether every changed field is a tie the stored AFTER run shows (see the module's docstring)."""
    if run is None or not changed <= CHOICE | CODET or before["drawn"] != after["drawn"]:
        return False
    drawn = after["drawn"]
    chosen = _candidate(run, drawn, before["source"]), _candidate(run, drawn, after["source"])
    if changed & CHOICE and not _tied(*chosen):
        return False
    if changed & CODET:
        picks = _candidate(run, drawn, before["codet_source"]), _candidate(run, drawn, after["codet_source"])
        if not _same_generated(*picks):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--runs", type=Path, help="the SQLite file the AFTER bench kept (swarm bench quality --db)")
    args = parser.parse_args(argv)
    before, after = selections(args.before), selections(args.after)
    if before.keys() != after.keys():
        missing, extra = sorted(before.keys() - after.keys()), sorted(after.keys() - before.keys())
        print(f"different tasks: {len(missing)} only in {args.before}, {len(extra)} only in {args.after}")
        return 2
    runs = stored_runs(args.runs) if args.runs else {}
    fields: Counter[str] = Counter()
    ties: list[tuple[str, int]] = []
    unexplained: list[tuple[str, int]] = []
    for key in sorted(before):
        old, new = before[key], after[key]
        changed = {f for f in (old.keys() | new.keys()) - VOLATILE if old.get(f) != new.get(f)}
        if not changed:
            continue
        fields.update(changed)
        (ties if explained(old, new, changed, runs.get(new.get("run_id", ""))) else unexplained).append(key)
    print(
        f"{len(before)} selections compared ({args.before.name} vs {args.after.name}): "
        f"{len(ties) + len(unexplained)} differ"
        + (f", {len(ties)} of them between tied candidates (same score, only latency parted them)" if runs else "")
    )
    for field, count in fields.most_common():
        print(f"  {field}: {count}")
    for task_id, repeat in unexplained[:10]:
        print(f"  not a tie: {task_id} #{repeat}" if runs else f"  e.g. {task_id} #{repeat}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
