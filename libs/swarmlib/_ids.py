"""Validation of the candidate ids that every stage's request carries."""

from __future__ import annotations

from collections.abc import Iterable

from ._errors import InvalidArgumentError


def check_candidate_ids(ids: Iterable[str]) -> None:
    """Every id non-blank and unique, else ``InvalidArgumentError`` naming the first bad position."""
    seen: set[str] = set()
    for position, candidate_id in enumerate(ids):
        if not candidate_id.strip():
            raise InvalidArgumentError(f"candidates[{position}].id is empty: give every candidate a unique id")
        if candidate_id in seen:
            raise InvalidArgumentError(
                f"candidates[{position}].id={candidate_id!r} is a duplicate (the id appears more than once): "
                "ids must be unique"
            )
        seen.add(candidate_id)
