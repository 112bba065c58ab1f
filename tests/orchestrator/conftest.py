"""Fixtures: the three stage services once per session (in plaintext, and behind mTLS for the TLS
tests); a database per test (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from swarm_bench.runs import database
from swarm_bench.stack import StackTls, Stages, stage_servers

if TYPE_CHECKING:
    from tests.certs import Certs


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
async def postgres_url(tmp_path: Path) -> AsyncIterator[str]:
    """A fresh database on the machine's PostgreSQL server, dropped afterwards."""
    async with database("postgres", tmp_path, prefix="swarm_test") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each persistence-sensitive test runs once on SQLite and once on PostgreSQL."""
    return str(request.getfixturevalue(f"{request.param}_url"))
