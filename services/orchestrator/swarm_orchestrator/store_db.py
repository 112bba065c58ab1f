"""How the run store reaches its database: an engine set up for concurrent use, one writer at a time
on SQLite, a few retries of what failed for a passing reason, and database errors in words.

SQLite allows one writer per file. Left to itself, a burst of runs has many sessions writing at
once, and the ones that lose the race fail with "database is locked" (once surfacing as UNKNOWN
with the SQL, its parameters and the task in the message). Here SQLite runs in WAL mode (readers
never wait for the writer), every write transaction begins ``BEGIN IMMEDIATE`` (it takes the write
lock up front instead of failing when a read turns into a write), and writes queue on one asyncio
lock, so this process never races itself; the busy timeout covers other processes on the file.
PostgreSQL needs none of that. What is retried, how often, and what the caller then sees:
docs/reliability.md ("The store").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError, TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from swarmlib import StoreUnavailableError

log = logging.getLogger(__name__)

T = TypeVar("T")
Work = Callable[[AsyncSession], Awaitable[T]]

# Attempts of one read or write transaction whose failure may pass (locked, connection lost), and
# the pauses between them: long enough for a restarted PostgreSQL connection or a checkpoint.
ATTEMPTS = 3
PAUSES_S = (0.1, 0.5)
_WRITE = "swarm_write"
# SQLSTATE classes of PostgreSQL that say "try again": connection exception, insufficient
# resources, operator intervention (shutting down, cannot connect now), transaction rollback
# (serialization failure, deadlock).
_PASSING_SQLSTATES = ("08", "53", "57", "40")
_SQLITE_WORDS = {
    "SQLITE_FULL": "the disk is full",
    "SQLITE_READONLY": "the database file is read-only",
    "SQLITE_CANTOPEN": "the database file cannot be opened",
    "SQLITE_IOERR": "a disk I/O error",
    "SQLITE_CORRUPT": "the database file is corrupt",
    "SQLITE_NOTADB": "the file is not a database",
}


@dataclass(frozen=True)
class Failure:
    """A database failure in words (never SQL, parameters or data), and whether trying again may help."""

    reason: str
    passing: bool


def failure_of(exc: Exception) -> Failure | None:
    """What ``exc`` says about the database's availability; None when it says nothing (a domain
    error raised inside a transaction, or a bug: the caller lets those through unchanged)."""
    if isinstance(exc, PoolTimeoutError):
        return Failure("no database connection became free in time", passing=True)
    if isinstance(exc, OSError):  # refused or timed-out connects come through unwrapped
        words = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        return Failure(f"cannot reach the database ({words})", passing=True)
    if not isinstance(exc, DBAPIError):
        return None
    if exc.connection_invalidated:
        return Failure("the connection to the database was lost", passing=True)
    orig = exc.orig
    if isinstance(orig, sqlite3.Error):
        if not isinstance(orig, sqlite3.OperationalError):
            return None
        name = getattr(orig, "sqlite_errorname", "") or ""
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return Failure("database is locked (another writer held it past the busy timeout)", passing=True)
        described = next((w for prefix, w in _SQLITE_WORDS.items() if name.startswith(prefix)), None)
        return Failure(described, passing=False) if described else None
    sqlstate = str(getattr(orig, "pgcode", None) or "")
    if sqlstate.startswith(_PASSING_SQLSTATES):
        return Failure(f"the database refused the work for now (SQLSTATE {sqlstate})", passing=True)
    if sqlstate == "3D000":
        return Failure("the database does not exist", passing=False)
    if isinstance(exc, (OperationalError, InterfaceError)) and not sqlstate:
        return Failure(f"the database driver failed ({type(orig).__name__})", passing=True)
    return None


class Database:
    """Sessions for reads and for writes, each transaction retried a few times when its failure
    may pass, and ``StoreUnavailableError`` when it does not."""

    def __init__(self, engine: AsyncEngine, *, one_writer: bool) -> None:
        self._engine = engine
        self._reads = async_sessionmaker(engine, expire_on_commit=False)
        self._writes = async_sessionmaker(engine.execution_options(**{_WRITE: True}), expire_on_commit=False)
        self._writer = asyncio.Lock() if one_writer else None

    @classmethod
    def open(cls, url: str, busy_timeout_s: float) -> Database:
        """An engine for ``url``; for SQLite, the parent directory, WAL, the busy timeout and
        ``BEGIN IMMEDIATE`` for writes."""
        if not url.startswith("sqlite"):
            return cls(create_async_engine(url, pool_pre_ping=True), one_writer=False)
        if ":///" in url:
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": busy_timeout_s})
        _configure_sqlite(engine)
        return cls(engine, one_writer=True)

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    async def dispose(self) -> None:
        await self._engine.dispose()

    async def read(self, work: Work[T]) -> T:
        """``work`` in a read-only session; retried (reads change nothing) while its failure may pass."""

        async def once() -> T:
            async with self._reads() as session:
                return await work(session)

        return await self._attempts(once, "read")

    async def write(self, work: Work[T]) -> T:
        """``work`` in one write transaction, committed when it returns; retried as a whole
        (nothing of a failed attempt was committed) while its failure may pass."""

        async def once() -> T:
            async with self._one_writer(), self._writes.begin() as session:
                return await work(session)

        return await self._attempts(once, "write")

    @contextlib.asynccontextmanager
    async def _one_writer(self) -> AsyncIterator[None]:
        if self._writer is None:
            yield
            return
        async with self._writer:
            yield

    @staticmethod
    async def _attempts(once: Callable[[], Awaitable[T]], what: str) -> T:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await once()
            except Exception as exc:
                failure = failure_of(exc)
                if failure is None:
                    raise
                if not failure.passing or attempt == ATTEMPTS:
                    tried = f" (tried {attempt} times)" if attempt > 1 else ""
                    log.warning("run store %s failed: %s%s", what, failure.reason, tried)
                    raise StoreUnavailableError(f"the run store is unavailable: {failure.reason}{tried}") from None
                log.info("run store %s failed (%s); trying again", what, failure.reason)
                await asyncio.sleep(PAUSES_S[attempt - 1])
        raise AssertionError("unreachable")  # pragma: no cover


def _configure_sqlite(engine: AsyncEngine) -> None:
    """WAL and a deferred ``BEGIN`` for reads, ``BEGIN IMMEDIATE`` for writes (the driver's own
    transaction handling is turned off, so these are the only ones)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        write = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
