"""What every user of the Runloop API here shares: the client, errors, idempotency, status, shutdown.

Two things drive devboxes through the official SDK: the Runloop sandbox's warm pool
(``_runloop_pool``, for the assessor and ``swarm sandbox exec``) and the orchestrator's
devbox-hosted LLM instances. Both follow the same rules, written here once: every mutating call
carries an idempotency key of ours, which the SDK sends as ``x-request-id`` and repeats on each of
its retries, so a create whose answer was lost cannot leave a second devbox behind; SDK errors
become ``SandboxUnavailableError`` with a message that says what failed and never contains the API
key; a devbox is shut down best effort.

This module imports the SDK, so ``swarmlib`` does not re-export it: import it where Runloop is used.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Callable, Iterator
from typing import TypedDict

import httpx
from runloop_api_client import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AsyncRunloop,
    AuthenticationError,
    DefaultAsyncHttpxClient,
    PermissionDeniedError,
    RateLimitError,
    RunloopError,
    omit,
)
from runloop_api_client.lib.polling import PollingConfig, PollingTimeout

from ._errors import SandboxUnavailableError

log = logging.getLogger(__name__)

Clock = Callable[[], float]
REQUEST_TIMEOUT_S = 60.0


def open_client(api_key: str, base_url: str, max_retries: int, http: httpx.AsyncClient | None = None) -> AsyncRunloop:
    """An SDK client on one HTTP client (``http``, or a new one).

    Left alone, the SDK builds one HTTP client per resource shard (26 of them), each loading the
    CA bundle while blocking the event loop for tens of milliseconds.
    """
    return AsyncRunloop(
        bearer_token=api_key,
        base_url=base_url or None,
        max_retries=max_retries,
        timeout=REQUEST_TIMEOUT_S,
        http_client=http or DefaultAsyncHttpxClient(timeout=REQUEST_TIMEOUT_S),
    )


def idempotency_key(op: str) -> str:
    """A fresh key for one logical call; the SDK repeats it on every retry of that call."""
    return f"swarm-{op}-{uuid.uuid4()}"


def describe(exc: BaseException, action: str, retries: int) -> str:
    """What went wrong, for a client: status, whether retries were spent, no headers, no key."""
    if isinstance(exc, AuthenticationError | PermissionDeniedError):
        return f"Runloop API refused the API key to {action} (HTTP {exc.status_code}); check RUNLOOP_API_KEY"
    if isinstance(exc, RateLimitError):
        return f"Runloop API rate limit (HTTP 429) to {action} persisted after {retries} retries; retry later"
    if isinstance(exc, APIStatusError):
        retried = exc.status_code >= 500 or exc.status_code in (408, 409)
        after = f" after {retries} retries" if retried else ""
        kind = "failed" if exc.status_code >= 500 else "refused"
        return f"Runloop API {kind} to {action}: HTTP {exc.status_code}{after}: {_detail(exc.body)}"
    if isinstance(exc, APITimeoutError):
        return f"Runloop API did not answer in time to {action} (after {retries} retries)"
    if isinstance(exc, APIConnectionError):
        cause = exc.__cause__ or exc
        return f"cannot reach the Runloop API to {action} (after {retries} retries): {type(cause).__name__}"
    if isinstance(exc, PollingTimeout):
        return f"Runloop gave up waiting to {action}: {str(exc).split('. Last retrieved', 1)[0]}"
    return f"Runloop could not {action}: {exc}"


def _detail(body: object) -> str:
    if isinstance(body, dict):
        body = body.get("error") or body.get("message") or body
    return str(body)[:200]


@contextlib.contextmanager
def api_errors(action: str, retries: int) -> Iterator[None]:
    """Turn SDK failures inside the block into ``SandboxUnavailableError`` saying ``action``."""
    try:
        yield
    except (RunloopError, PollingTimeout) as exc:
        raise SandboxUnavailableError(describe(exc, action, retries)) from exc


def polling(timeout_s: float) -> PollingConfig:
    """Long-poll for up to ``timeout_s``; the SDK's default caps the wait at 120 attempts of 1 s."""
    return PollingConfig(interval_seconds=1.0, max_attempts=1_000_000, timeout_seconds=timeout_s)


class BlueprintRef(TypedDict, total=False):
    """The blueprint a devbox starts from, as the create call names it."""

    blueprint_id: str
    blueprint_name: str


def blueprint_ref(blueprint: str) -> BlueprintRef:
    """``bpt_…`` is a blueprint id, anything else its name; empty: the SDK's default image."""
    if not blueprint:
        return {}
    return {"blueprint_id": blueprint} if blueprint.startswith("bpt_") else {"blueprint_name": blueprint}


async def devbox_stopped(client: AsyncRunloop, box_id: str, retries: int) -> str | None:
    """None while the devbox runs, else why not: ``status X (reason)``.

    Raises ``SandboxUnavailableError`` when the API cannot say.
    """
    with api_errors(f"check devbox {box_id}", retries):
        view = await client.devboxes.retrieve(box_id)
    if view.status == "running":
        return None
    reason = f" ({view.failure_reason})" if view.failure_reason else ""
    return f"status {view.status}{reason}"


async def shutdown_devbox(client: AsyncRunloop, box_id: str, *, force: bool, retries: int) -> None:
    """Best effort: a devbox that cannot be shut down is reported, not retried forever.

    ``force`` shuts down a devbox that may be mid-snapshot (a suspend in progress cannot block it).
    """
    try:
        with api_errors(f"shut down devbox {box_id}", retries):
            await client.devboxes.shutdown(
                box_id, force="true" if force else omit, idempotency_key=idempotency_key("shutdown")
            )
    except SandboxUnavailableError as exc:
        log.warning("%s", exc)
