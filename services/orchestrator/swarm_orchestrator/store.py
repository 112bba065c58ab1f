"""Persistence of runs, candidates and failures (SQLAlchemy 2 async; SQLite or PostgreSQL).

A run row is written when the run is accepted, each candidate and failure as it arrives, and the
final document when the run ends: a crash mid-run leaves a RUNNING row with everything gathered so
far, never a half-validated request.
"""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path
from typing import TypeVar, cast

from google.protobuf import json_format
from google.protobuf.message import Message
from sqlalchemy import DateTime, Float, ForeignKey, Index, Integer, String, Text, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from swarm.v1 import orchestrator_pb2 as pb
from swarmlib import InvalidArgumentError, NotFoundError


class _Base(DeclarativeBase):
    pass


class RunRow(_Base):
    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    task: Mapped[str] = mapped_column(Text)
    status: Mapped[int] = mapped_column(Integer)
    swarm_size: Mapped[int] = mapped_column(Integer)
    quorum: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    final_overall: Mapped[float] = mapped_column(Float, default=0.0)
    consensus_reached: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(Text, default="")
    document: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_runs_created", "created_at", "id"),)


class CandidateRow(_Base):
    __tablename__ = "candidates"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    candidate_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    document: Mapped[str] = mapped_column(Text)


class FailureRow(_Base):
    __tablename__ = "failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    document: Mapped[str] = mapped_column(Text)


def _to_json(message: Message) -> str:
    return str(json_format.MessageToJson(message, preserving_proto_field_name=True, indent=None))


_M = TypeVar("_M", bound=Message)


def _parse(document: str, message: _M) -> _M:
    """Stored JSON back to a message; fields a newer or older contract dropped are ignored."""
    json_format.Parse(document, message, ignore_unknown_fields=True)
    return message


def _encode_token(created: dt.datetime, run_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created.isoformat()}|{run_id}".encode()).decode()


def _decode_token(token: str) -> tuple[dt.datetime, str]:
    try:
        created, run_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        when = dt.datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("token time has no timezone")
        return when.astimezone(dt.UTC), run_id
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgumentError(
            "page_token is not a token returned by ListRuns; omit it for the first page"
        ) from None


def _aware(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


class RunStore:
    """The orchestrator's only door to the database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    async def open(cls, url: str) -> RunStore:
        """Connect and create the tables if they are missing (SQLite parent directory too)."""
        if url.startswith("sqlite") and ":///" in url:
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, pool_pre_ping=True)
        async with engine.begin() as conn:
            await conn.run_sync(_Base.metadata.create_all)
        return cls(engine)

    async def close(self) -> None:
        await self._engine.dispose()

    async def create_run(self, run: pb.Run) -> None:
        async with self._sessions.begin() as session:
            session.add(
                RunRow(
                    id=run.id,
                    task=run.task,
                    status=run.status,
                    swarm_size=run.swarm_size,
                    quorum=run.quorum,
                    created_at=run.created_at.ToDatetime(tzinfo=dt.UTC),
                    finished_at=None,
                    final_overall=0.0,
                    consensus_reached=0,
                    error="",
                    document="",
                )
            )

    async def add_candidate(self, run_id: str, candidate: pb.Candidate) -> None:
        async with self._sessions.begin() as session:
            await session.merge(CandidateRow(run_id=run_id, candidate_id=candidate.id, document=_to_json(candidate)))

    async def add_failure(self, run_id: str, failure: pb.InstanceFailure) -> None:
        async with self._sessions.begin() as session:
            session.add(FailureRow(run_id=run_id, document=_to_json(failure)))

    async def finish_run(self, run: pb.Run) -> None:
        """Store the final document and every candidate with its final scores and rank."""
        async with self._sessions.begin() as session:
            for candidate in run.candidates:
                await session.merge(
                    CandidateRow(run_id=run.id, candidate_id=candidate.id, document=_to_json(candidate))
                )
            await session.execute(
                update(RunRow)
                .where(RunRow.id == run.id)
                .values(
                    status=run.status,
                    finished_at=run.finished_at.ToDatetime(tzinfo=dt.UTC) if run.HasField("finished_at") else None,
                    final_overall=run.final.overall if run.HasField("final") else 0.0,
                    consensus_reached=int(run.consensus.reached),
                    error=run.error,
                    document=_to_json(run),
                )
            )

    async def get_run(self, run_id: str) -> pb.Run:
        async with self._sessions() as session:
            row = await session.get(RunRow, run_id)
            if row is None:
                raise NotFoundError(f"run {run_id!r} does not exist; `swarm runs list` shows stored runs")
            if row.document:
                return _parse(row.document, pb.Run())
            run = pb.Run(
                id=row.id,
                task=row.task,
                status=cast("pb.RunStatus", row.status),
                swarm_size=row.swarm_size,
                quorum=row.quorum,
                error=row.error,
            )
            run.created_at.FromDatetime(_aware(row.created_at))
            candidates = await session.scalars(
                select(CandidateRow).where(CandidateRow.run_id == run_id).order_by(CandidateRow.candidate_id)
            )
            for candidate in candidates:
                run.candidates.append(_parse(candidate.document, pb.Candidate()))
            failures = await session.scalars(
                select(FailureRow).where(FailureRow.run_id == run_id).order_by(FailureRow.id)
            )
            for failure in failures:
                run.failures.append(_parse(failure.document, pb.InstanceFailure()))
            return run

    async def list_runs(self, page_size: int, page_token: str) -> tuple[list[pb.RunSummary], str]:
        query = select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id.desc()).limit(page_size + 1)
        if page_token:
            created, run_id = _decode_token(page_token)
            query = query.where((RunRow.created_at < created) | ((RunRow.created_at == created) & (RunRow.id < run_id)))
        async with self._sessions() as session:
            rows = list(await session.scalars(query))
        summaries = []
        for row in rows[:page_size]:
            summary = pb.RunSummary(
                id=row.id,
                task=row.task[:200],
                status=cast("pb.RunStatus", row.status),
                swarm_size=row.swarm_size,
                final_overall=row.final_overall,
                consensus_reached=bool(row.consensus_reached),
            )
            summary.created_at.FromDatetime(_aware(row.created_at))
            summaries.append(summary)
        next_token = ""
        if len(rows) > page_size:
            last = rows[page_size - 1]
            next_token = _encode_token(_aware(last.created_at), last.id)
        return summaries, next_token
