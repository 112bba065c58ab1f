"""Bench data files: tasks with recorded model outputs (``../shared/bench-data/README.md``).

A file is JSONL, optionally gzipped, one task a line: its prompt, the recorded candidates with
their sources, optionally the generated tests recorded with them, the visible tests the user
states beside the task (sent to the swarm as attached tests) and the hidden reference test.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Candidate:
    """One recorded model output and where it came from (``model/settings#run``)."""

    source: str
    text: str


@dataclass(frozen=True)
class Record:
    """One task of a bench data file (``../shared/bench-data/README.md`` describes the format)."""

    task_id: str
    prompt: str
    entry_point: str
    style: str
    candidates: tuple[Candidate, ...]
    generated_tests: tuple[str, ...] | None = None
    reference_test: str | None = None
    visible_tests: tuple[str, ...] = ()  # the user's own tests: the swarm may see and run them


def model_of(source: str) -> str:
    """The model part of a recorded source ("gpt-4/t0.2#3" -> "gpt-4/t0.2"): what an API would report."""
    return source.split("#", 1)[0] or "replay"


class DataError(ValueError):
    """A data file that cannot be used; the message names the file and line."""


def load_records(path: Path) -> list[Record]:
    """Read a (gzipped or plain) JSONL bench data file."""
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    records: list[Record] = []
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    records.append(_record(json.loads(line)))
                except (ValueError, KeyError, TypeError) as exc:
                    raise DataError(f"{path}:{number}: {exc}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    return records


def _record(row: Mapping[str, Any]) -> Record:
    candidates = tuple(Candidate(str(c["source"]), str(c["text"])) for c in row["candidates"])
    if not candidates:
        raise ValueError(f"{row['task_id']}: no candidates")
    tests = row.get("generated_tests")
    reference = row.get("reference_test")
    visible = row.get("visible_tests") or []
    if not isinstance(visible, list):
        raise ValueError(f"{row['task_id']}: visible_tests must be a list of assert strings")
    return Record(
        task_id=str(row["task_id"]),
        prompt=str(row["prompt"]),
        entry_point=str(row.get("entry_point", "")),
        style=str(row.get("style", "")),
        candidates=candidates,
        generated_tests=tuple(str(t) for t in tests) if isinstance(tests, list) else None,
        reference_test=str(reference) if reference else None,
        visible_tests=tuple(str(t) for t in visible if str(t).strip()),
    )
