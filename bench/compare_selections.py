"""Do two runs of `swarm bench quality` select the same answers? (A refactoring must not move them.)

Usage: .venv/bin/python bench/compare_selections.py BEFORE.jsonl AFTER.jsonl

Compares the selection files line by line on everything but what differs from run to run by
nature (the run id and the timings) and prints how many tasks differ, and in which fields; exits
1 when any does, 2 when the files do not describe the same tasks.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# Fields that name or time one run, not what it selected.
VOLATILE = frozenset({"run_id", "wall_s", "stage_s"})


def selections(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                rows[(row["task_id"], row["repeat"])] = {k: v for k, v in row.items() if k not in VOLATILE}
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    before, after = selections(args.before), selections(args.after)
    if before.keys() != after.keys():
        missing, extra = sorted(before.keys() - after.keys()), sorted(after.keys() - before.keys())
        print(f"different tasks: {len(missing)} only in {args.before}, {len(extra)} only in {args.after}")
        return 2
    fields: Counter[str] = Counter()
    differing = []
    for key in sorted(before):
        changed = sorted(f for f in before[key].keys() | after[key].keys() if before[key].get(f) != after[key].get(f))
        if changed:
            differing.append(key)
            fields.update(changed)
    print(f"{len(before)} selections compared ({args.before.name} vs {args.after.name}): {len(differing)} differ")
    for field, count in fields.most_common():
        print(f"  {field}: {count}")
    for task_id, repeat in differing[:10]:
        print(f"  e.g. {task_id} #{repeat}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
