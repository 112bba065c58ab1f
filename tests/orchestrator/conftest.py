"""Fixtures: the three stage services once per session (in plaintext, and behind mTLS for the TLS
tests); a database per test (SQLite and PostgreSQL)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import asyncpg
import pytest

from swarm_bench.stack import StackTls, Stages, stage_servers

if TYPE_CHECKING:
    from tests.certs import Certs

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
async def stages() -> AsyncIterator[Stages]:
    async with stage_servers() as targets:
        yield targets


@pytest.fixture(scope="session")
async def tls_stages(certs: Certs) -> AsyncIterator[Stages]:
    """The stages behind mTLS: the session CA's certificates only, a client certificate required."""
    async with stage_servers(tls=StackTls(certs.ca, certs.server.cert, certs.server.key)) as targets:
        yield targets


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'swarm.db'}"


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """A fresh database on the machine's PostgreSQL server, dropped afterwards."""
    name = f"swarm_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each persistence-sensitive test runs once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url"))
