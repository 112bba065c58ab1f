"""Domain errors and the one table that maps them to gRPC status codes.

Services raise these from deep code; the server interceptor (see ``_server``) turns them into a
gRPC status with the exception's message, so a client always learns *what to fix*. Any other
exception is a bug: the caller gets ``INTERNAL`` with an error id, never its text.
"""

from __future__ import annotations

import uuid

import grpc


class SwarmError(Exception):
    """Base of every error the services report to a client."""


class InvalidArgumentError(SwarmError):
    """The request is malformed; the message says which field and what is allowed."""


class NotFoundError(SwarmError):
    """A named run, candidate or instance does not exist."""


class PermissionDeniedError(SwarmError):
    """The caller may not use what it asked for (for example an instance whose key it named)."""


class UnauthenticatedError(SwarmError):
    """The caller did not show a valid credential (an API key in ``authorization: Bearer`` metadata)."""


class FailedPreconditionError(SwarmError):
    """The request is well formed but the target is not in a state that allows it (for example
    approving a run that is not waiting for approval); the message says what state it is in."""


class ConfigError(SwarmError):
    """Configuration (environment or instances file) is missing or malformed."""


class QuorumNotReachedError(SwarmError):
    """Too few instances answered for the run to go on."""


class StageError(SwarmError):
    """A downstream stage (collator, assessor, refiner) failed or was unreachable."""


class StoreUnavailableError(SwarmError):
    """The run store (the database) could not be read or written, after bounded retries; the message
    says why in words of its own, never the SQL, its parameters or stored text."""


class ResourceExhaustedError(SwarmError):
    """A bound (queue, budget, concurrency) was hit; retry later or ask for less."""


class QueueTimeoutError(ResourceExhaustedError):
    """A run waited its whole SWARM_QUEUE_TIMEOUT_S in the queue at the door; nothing was called."""


class BudgetExceededError(ResourceExhaustedError):
    """A run's upper bound does not fit its per-run limit or its caller's or tenant's budget;
    nothing was stored or called (docs/budgets.md)."""


class SandboxUnavailableError(SwarmError):
    """The sandbox cannot run here (no bubblewrap, no user namespaces)."""


class LLMError(SwarmError):
    """An LLM instance call failed; subclasses say how."""


class LLMHTTPError(LLMError):
    """The instance answered with an HTTP error status."""

    def __init__(self, message: str, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after


class LLMTimeoutError(LLMError):
    """The instance did not answer within its deadline."""


class LLMConnectError(LLMError):
    """The instance could not be reached."""


class LLMMalformedError(LLMError):
    """The instance sent something that is not a valid (streamed) chat completion."""


class LLMEmptyError(LLMError):
    """The instance answered with no content."""


_STATUS: dict[type[SwarmError], grpc.StatusCode] = {
    SwarmError: grpc.StatusCode.INTERNAL,
    InvalidArgumentError: grpc.StatusCode.INVALID_ARGUMENT,
    NotFoundError: grpc.StatusCode.NOT_FOUND,
    PermissionDeniedError: grpc.StatusCode.PERMISSION_DENIED,
    UnauthenticatedError: grpc.StatusCode.UNAUTHENTICATED,
    FailedPreconditionError: grpc.StatusCode.FAILED_PRECONDITION,
    ConfigError: grpc.StatusCode.FAILED_PRECONDITION,
    QuorumNotReachedError: grpc.StatusCode.UNAVAILABLE,
    StageError: grpc.StatusCode.UNAVAILABLE,
    StoreUnavailableError: grpc.StatusCode.UNAVAILABLE,
    ResourceExhaustedError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    QueueTimeoutError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    BudgetExceededError: grpc.StatusCode.RESOURCE_EXHAUSTED,
    SandboxUnavailableError: grpc.StatusCode.FAILED_PRECONDITION,
    LLMError: grpc.StatusCode.UNAVAILABLE,
    LLMHTTPError: grpc.StatusCode.UNAVAILABLE,
    LLMTimeoutError: grpc.StatusCode.DEADLINE_EXCEEDED,
    LLMConnectError: grpc.StatusCode.UNAVAILABLE,
    LLMMalformedError: grpc.StatusCode.UNAVAILABLE,
    LLMEmptyError: grpc.StatusCode.UNAVAILABLE,
}


def status_for(exc: SwarmError) -> grpc.StatusCode:
    """The gRPC status of a domain error: its own class's entry, else its nearest mapped base."""
    for cls in type(exc).__mro__:
        if cls in _STATUS:
            return _STATUS[cls]
    return grpc.StatusCode.INTERNAL


def mapped_error_types() -> frozenset[type[SwarmError]]:
    """Every class with an explicit entry (tests check that no domain error is left out)."""
    return frozenset(_STATUS)


def error_id(exc: BaseException) -> str:
    """The id an unexpected error is logged and reported under: the same for one exception however
    often it is asked for, so the caller's id, the stored run's and the log's agree."""
    existing = getattr(exc, "_swarm_error_id", None)
    if isinstance(existing, str):
        return existing
    new = uuid.uuid4().hex[:16]
    exc._swarm_error_id = new  # type: ignore[attr-defined]
    return new


def internal_error_message(exc: BaseException) -> str:
    """What a caller learns of an unexpected error: its id, never its text (SQL, parameters, documents)."""
    return f"internal error {error_id(exc)}: the server failed unexpectedly; its log holds the details under this id"
