"""A real collator (real embedding model) on an ephemeral port, shared by the whole session.

``HF_HUB_OFFLINE`` is set before anything can import ``huggingface_hub``, and the model is
loaded with Python-level outbound connections refused, so a test run can never download.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import pytest
import pytest_asyncio

from swarm.v1 import collator_pb2_grpc
from swarm_collator.config import CollatorConfig
from swarm_collator.server import create_server
from swarmlib import SwarmServer


def _is_loopback(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        try:
            return ipaddress.ip_address(str(address[0])).is_loopback
        except ValueError:
            return str(address[0]) == "localhost"
    return True  # Unix sockets and the like never leave the machine.


@contextmanager
def no_network() -> Iterator[None]:
    """Refuse Python-level connections to anything but loopback for the duration."""
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        if not _is_loopback(address):
            raise OSError(f"network access attempted during collator tests: {address!r}")
        original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not _is_loopback(address):
            raise OSError(f"network access attempted during collator tests: {address!r}")
        return original_connect_ex(self, address)

    setattr(socket.socket, "connect", connect)  # noqa: B010 - setattr keeps mypy out of the stub signature
    setattr(socket.socket, "connect_ex", connect_ex)  # noqa: B010
    try:
        yield
    finally:
        setattr(socket.socket, "connect", original_connect)  # noqa: B010
        setattr(socket.socket, "connect_ex", original_connect_ex)  # noqa: B010


@pytest.fixture(scope="session")
def collator_config() -> CollatorConfig:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWARM_")}
    env["SWARM_COLLATOR_ADDR"] = "127.0.0.1:0"
    env["OTEL_TRACES_EXPORTER"] = "none"
    env["SWARM_METRICS_ADDR"] = "127.0.0.1:0"  # not the fixed default: a running `swarm up` holds it
    return CollatorConfig.from_env(env)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def collator_server(collator_config: CollatorConfig) -> AsyncIterator[tuple[SwarmServer, int]]:
    with no_network():
        server, port = await create_server(collator_config)
    await server.start()
    try:
        yield server, port
    finally:
        await server.stop(grace=1.0)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def collator_channel(collator_server: tuple[SwarmServer, int]) -> AsyncIterator[grpc.aio.Channel]:
    _, port = collator_server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield channel


@pytest.fixture
def collator(collator_channel: grpc.aio.Channel) -> collator_pb2_grpc.CollatorServiceStub:
    return collator_pb2_grpc.CollatorServiceStub(collator_channel)
