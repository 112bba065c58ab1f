"""The chaos runs use the orchestrator tests' databases: a SQLite file, or a throwaway PostgreSQL
database on the machine's server."""

from __future__ import annotations

from tests.orchestrator.conftest import database_url, postgres_url, sqlite_url

__all__ = ["database_url", "postgres_url", "sqlite_url"]
