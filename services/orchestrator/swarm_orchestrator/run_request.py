"""What a RunSwarm (or EstimateRun) request must be before anything is stored: bad input is
refused with a message that says which field and what is allowed."""

from __future__ import annotations

import math
from collections.abc import Sequence

from swarm.v1 import orchestrator_pb2 as pb
from swarmlib import InvalidArgumentError, attached_test_error

from .config import OrchestratorConfig

MAX_INSTANCE_TIMEOUT_S = 3600.0


def check_text(name: str, value: str) -> None:
    """Text the store keeps as given: no NUL, which PostgreSQL cannot store (and no task needs)."""
    if "\x00" in value:
        raise InvalidArgumentError(
            f"{name} contains a NUL character (\\x00) at position {value.index(chr(0))}: remove it"
        )


def validate(
    request: pb.RunSwarmRequest | pb.EstimateRunRequest, config: OrchestratorConfig, known: list[str]
) -> list[str]:
    """Reject bad input before anything is stored; returns the instances the run may use to answer
    (never the refine-only instance)."""
    if not request.task.strip():
        raise InvalidArgumentError("task is empty: send the coding task in the `task` field")
    check_text("task", request.task)
    if len(request.task) > config.max_task_chars:
        raise InvalidArgumentError(
            f"task is {len(request.task)} characters; the limit is {config.max_task_chars} "
            "(shorten it, or raise SWARM_MAX_TASK_CHARS on the orchestrator)"
        )
    if not 0 <= request.swarm_size <= config.max_swarm_size:
        raise InvalidArgumentError(
            f"swarm_size is {request.swarm_size}; use 1..{config.max_swarm_size}, "
            "or 0 to leave the size to the server (adaptive, up to 7)"
        )
    _check_tests(request.tests)
    known = config.answering(known)
    if config.refine_instance and config.refine_instance in request.instances:
        raise InvalidArgumentError(
            f"instances: {config.refine_instance!r} only refines (SWARM_REFINE_INSTANCE) and answers no task; "
            f"answering instances: {known}"
        )
    if isinstance(request, pb.EstimateRunRequest):
        return _allowed(request, known)
    if not math.isfinite(request.max_cost_usd) or request.max_cost_usd < 0:
        raise InvalidArgumentError(
            f"max_cost_usd is {request.max_cost_usd}; use a cost in USD >= 0 (0: no per-run limit)"
        )
    timeout = request.instance_timeout_seconds
    if not math.isfinite(timeout) or not 0 <= timeout <= MAX_INSTANCE_TIMEOUT_S:
        raise InvalidArgumentError(
            f"instance_timeout_seconds is {timeout}; use 0..{MAX_INSTANCE_TIMEOUT_S:.0f} (0 uses the server default)"
        )
    return _allowed(request, known)


def _check_tests(tests: Sequence[str]) -> None:
    """The user's attached tests: each must be Python holding an assert (refused by index)."""
    blank = [i for i, test in enumerate(tests) if not test.strip()]
    if blank:
        raise InvalidArgumentError(f"tests{blank} are empty: attach assert statements, or leave tests out")
    for index, test in enumerate(tests):
        check_text(f"tests[{index}]", test)
        problem = attached_test_error(test)
        if problem is not None:
            # The index, not the text: the test is the user's and error details reach logs.
            raise InvalidArgumentError(f"tests[{index}] {problem}: fix or remove that test")


def _allowed(request: pb.RunSwarmRequest | pb.EstimateRunRequest, known: list[str]) -> list[str]:
    unknown = sorted({name for name in request.instances if name not in known})
    if unknown:
        shown = [name if len(name) <= 60 else f"{name[:60]}..." for name in unknown[:10]]
        raise InvalidArgumentError(f"instances: unknown instance(s) {shown}; configured instances: {known}")
    return list(dict.fromkeys(request.instances)) or list(known)
