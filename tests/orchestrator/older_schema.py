"""A database as an older orchestrator left it: the tests of the store's upgrade path
(``store_rows.add_missing_columns``) write with today's store, then undo part of its schema."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


async def as_before(database_url: str, *statements: str) -> None:
    """Run ``statements`` (DROP INDEX / ALTER TABLE ... DROP COLUMN) in one transaction."""
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.execute(text(statement))
    finally:
        await engine.dispose()
