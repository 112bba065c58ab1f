"""The error table: no domain error may fall back to a base class's status by accident."""

from __future__ import annotations

import grpc
import pytest

import swarmlib
from swarmlib import (
    ConfigError,
    FailedPreconditionError,
    InvalidArgumentError,
    LLMHTTPError,
    LLMTimeoutError,
    SwarmError,
    UnauthenticatedError,
    mapped_error_types,
    status_for,
)


def all_subclasses(cls: type[SwarmError]) -> set[type[SwarmError]]:
    found: set[type[SwarmError]] = set()
    for sub in cls.__subclasses__():
        if "<locals>" not in sub.__qualname__:  # throwaway classes defined inside tests
            found |= {sub, *all_subclasses(sub)}
    return found


def test_every_domain_error_has_an_explicit_entry() -> None:
    missing = {cls.__name__ for cls in all_subclasses(SwarmError) | {SwarmError}} - {
        cls.__name__ for cls in mapped_error_types()
    }
    assert not missing, f"add these to _STATUS in swarmlib/_errors.py: {sorted(missing)}"


def test_every_domain_error_is_exported() -> None:
    for cls in all_subclasses(SwarmError):
        if cls.__module__.startswith("swarmlib"):
            assert getattr(swarmlib, cls.__name__) is cls


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidArgumentError("task is empty"), grpc.StatusCode.INVALID_ARGUMENT),
        (ConfigError("KEY unset"), grpc.StatusCode.FAILED_PRECONDITION),
        (FailedPreconditionError("run is not waiting for approval"), grpc.StatusCode.FAILED_PRECONDITION),
        (UnauthenticatedError("no x-swarm-user"), grpc.StatusCode.UNAUTHENTICATED),
        (LLMHTTPError("HTTP 500", 500), grpc.StatusCode.UNAVAILABLE),
        (LLMTimeoutError("slow"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (SwarmError("?"), grpc.StatusCode.INTERNAL),
    ],
)
def test_status_for(error: SwarmError, code: grpc.StatusCode) -> None:
    assert status_for(error) == code


def test_unmapped_subclass_falls_back_to_nearest_base() -> None:
    class LocalTimeout(LLMTimeoutError):
        pass

    assert status_for(LocalTimeout("x")) == grpc.StatusCode.DEADLINE_EXCEEDED
