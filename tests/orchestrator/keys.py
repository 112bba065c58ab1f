"""API keys for tests: callers of the stack's orchestrator other than its own local approver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import grpc

from swarm.v1 import orchestrator_pb2_grpc
from swarm_bench.stack import CHANNEL_OPTIONS, Orchestrator
from swarm_cli.local_keys import LOCAL_TENANT
from swarmlib import TlsConfig, grpc_channel
from swarmlib.api_keys import add_key

Metadata = tuple[tuple[str, str], ...]


def bearer(key: str, user: str = "") -> Metadata:
    """Call metadata that shows ``key`` (and, for a service key, names ``user``)."""
    return (("authorization", f"Bearer {key}"), *((("x-swarm-user", user),) if user else ()))


def new_key(orch: Orchestrator, principal: str, role: str = "member", tenant: str = LOCAL_TENANT) -> str:
    """A key added to the running orchestrator's keys file (it re-reads the file)."""
    key, _ = add_key(orch.keys_file, tenant, principal, role)
    return key


def as_key(orch: Orchestrator, principal: str, role: str = "member", tenant: str = LOCAL_TENANT) -> Metadata:
    return bearer(new_key(orch, principal, role, tenant))


@asynccontextmanager
async def keyless_channel(orch: Orchestrator) -> AsyncIterator[grpc.aio.Channel]:
    """A plaintext channel of its own that sends no key (the stack's channel always sends one)."""
    async with grpc_channel(orch.target, TlsConfig(plaintext=True), options=CHANNEL_OPTIONS) as channel:
        yield channel


@asynccontextmanager
async def keyless(orch: Orchestrator) -> AsyncIterator[orchestrator_pb2_grpc.OrchestratorServiceStub]:
    """A stub that sends no key."""
    async with keyless_channel(orch) as channel:
        yield orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
