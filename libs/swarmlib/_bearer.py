"""A client's API key on every call of a channel: ``authorization: Bearer <key>`` metadata, added by
client interceptors so no call of the CLI or the in-process stack can go out without it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

AUTHORIZATION = "authorization"


def _with_key(details: grpc.aio.ClientCallDetails, key: str) -> grpc.aio.ClientCallDetails:
    metadata = list(details.metadata or ())
    if any(k == AUTHORIZATION for k, _ in metadata):
        return details  # the call names its own credential (a test acting as another caller)
    metadata.append((AUTHORIZATION, f"Bearer {key}"))
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, grpc.aio.Metadata(*metadata), details.credentials, details.wait_for_ready
    )


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    def __init__(self, key: str) -> None:
        self._key = key

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_key(client_call_details, self._key), request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    def __init__(self, key: str) -> None:
        self._key = key

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(_with_key(client_call_details, self._key), request)


def bearer_interceptors(key: str) -> list[Any]:
    """Interceptors for ``grpc_channel(..., interceptors=...)`` that send ``key`` on every call
    (a call that carries its own ``authorization`` keeps it)."""
    return [_UnaryUnary(key), _UnaryStream(key)]
