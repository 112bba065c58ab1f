"""Who calls the OrchestratorService: an API key checked on every call, by a server interceptor.

The interceptor covers every method of the service (a new RPC cannot be left open by forgetting a
check); health and reflection are other services and stay open. It resolves the caller's
``Principal`` (tenant, user, role) from ``authorization: Bearer <key>`` and, for service keys, the
end user named in ``x-swarm-user``; the handlers read it with ``current()``. The rules, roles and
the keys file: docs/identity.md.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

from swarmlib import AUTHORIZATION, InvalidArgumentError, PermissionDeniedError, UnauthenticatedError
from swarmlib.api_keys import IDENTITY, KEY_VAR, KeyFile, key_id

USER_METADATA = "x-swarm-user"
SERVICE_PREFIX = "/swarm.v1.OrchestratorService/"
_HOW = (
    f"send `{AUTHORIZATION}: Bearer <key>` metadata (create a key with `swarm keys add`; the CLI sends "
    f"--api-key or ${KEY_VAR})"
)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: ``user`` acts within ``tenant`` with the rights of ``role``.

    ``asserted`` is True when a service key named the user (``x-swarm-user``): the service is
    trusted to say who its user is, not to make that user an approver.
    """

    tenant: str
    user: str
    role: str
    key_id: str
    asserted: bool = False

    @property
    def may_approve(self) -> bool:
        return self.role == "approver" and not self.asserted


_CURRENT: contextvars.ContextVar[Principal] = contextvars.ContextVar("swarm_principal")


def current() -> Principal:
    """The caller of the RPC being handled (set by ``AuthInterceptor`` before the handler runs)."""
    try:
        return _CURRENT.get()
    except LookupError:
        raise UnauthenticatedError(f"the call carries no verified identity: {_HOW}") from None


def _values(metadata: Any, name: str) -> list[str]:
    return [str(value) for key, value in (metadata or ()) if key == name]


def authenticate(metadata: Any, keys: KeyFile) -> Principal:
    """The principal of a call's metadata; never echoes the key it was sent."""
    headers = _values(metadata, AUTHORIZATION)
    if not headers:
        raise UnauthenticatedError(f"no API key: {_HOW}")
    scheme, _, key = headers[0].strip().partition(" ")
    key = key.strip()
    ident = key_id(key) if len(headers) == 1 and scheme.lower() == "bearer" else None
    if ident is None:
        raise UnauthenticatedError(f"the authorization metadata is not one well-formed API key: {_HOW}")
    record = keys.lookup(ident)
    # Looked up by id (not a secret), then digest compared with digest in constant time.
    if record is None or not record.matches(key) or record.revoked:
        raise UnauthenticatedError(f"the API key is unknown or revoked: {_HOW}")
    users = _values(metadata, USER_METADATA)
    if not users:
        return Principal(record.tenant, record.principal, record.role, record.id)
    user = users[0].strip()
    if len(users) > 1 or not IDENTITY.match(user):
        raise InvalidArgumentError(
            f"{USER_METADATA} must be one identity of letters, digits and . _ @ + - (at most 128 characters)"
        )
    if record.role == "service":
        return Principal(record.tenant, user, record.role, record.id, asserted=user != record.principal)
    if user != record.principal:
        raise PermissionDeniedError(
            f"only service keys may act for another user: this key is {record.principal}'s; "
            f"drop {USER_METADATA} or send {record.principal}"
        )
    return Principal(record.tenant, record.principal, record.role, record.id)


class AuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Authenticates every call of the OrchestratorService and hands the principal to its handler.

    Placed inside the error-mapping interceptor, so an ``UnauthenticatedError`` reaches the caller
    as ``UNAUTHENTICATED`` with its message.
    """

    def __init__(self, keys: KeyFile) -> None:
        self._keys = keys

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or not str(handler_call_details.method).startswith(SERVICE_PREFIX):
            return handler
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None and inspect.isasyncgenfunction(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        raise TypeError(f"{handler_call_details.method}: no authentication for this kind of RPC")

    def _unary(self, inner: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> Any:
            _CURRENT.set(authenticate(context.invocation_metadata(), self._keys))
            return await inner(request, context)

        return call

    def _stream(self, inner: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            _CURRENT.set(authenticate(context.invocation_metadata(), self._keys))
            async for item in inner(request, context):
                yield item

        return call
