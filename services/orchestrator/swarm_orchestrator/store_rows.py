"""The store's tables, and how runs, candidates, failures, approvals, feedback and reputation events
map to their rows (a run's document is its message as JSON).

There is no migration tool: a column added to a table that existed before is added to an older
database when the store opens it (``add_missing_columns``), with a default every old row can take.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import TypeVar, cast

from google.protobuf import json_format
from google.protobuf.message import Message
from sqlalchemy import Column, Connection, DateTime, Float, ForeignKey, Index, Integer, String, Text, inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from swarm.v1 import orchestrator_pb2 as pb
from swarmlib import InvalidArgumentError

from .reputation import Event

# The tenant of runs stored before tenants existed, and of runs stored without one.
DEFAULT_TENANT = "default"


class Base(DeclarativeBase):
    pass


class RunRow(Base):
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
    # The orchestrator that drives a RUNNING run, and until when it has promised to (its lease,
    # renewed while it works); NULL in rows from before leases existed. docs/reliability.md.
    owner: Mapped[str] = mapped_column(String(160), default="", server_default="")
    lease_expires: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Whose run it is: only callers of this tenant see it (docs/identity.md). Rows from before
    # tenants existed belong to ``default``.
    tenant: Mapped[str] = mapped_column(String(128), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT)
    # An adaptive run's first round (0: a fixed swarm); rows from before it existed are fixed.
    adaptive_start: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (
        Index("ix_runs_created", "created_at", "id"),
        Index("ix_runs_lease", "status", "lease_expires"),
        Index("ix_runs_tenant_created", "tenant", "created_at", "id"),
    )


class CandidateRow(Base):
    __tablename__ = "candidates"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    candidate_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    document: Mapped[str] = mapped_column(Text)


class FailureRow(Base):
    __tablename__ = "failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    document: Mapped[str] = mapped_column(Text)


class AuditRow(Base):
    __tablename__ = "audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class FeedbackRow(Base):
    __tablename__ = "feedback"

    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    author: Mapped[str] = mapped_column(String(128), primary_key=True)
    rating: Mapped[int] = mapped_column(Integer)
    preferred_candidate_id: Mapped[str] = mapped_column(String(40), default="")
    comment: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class ReputationEventRow(Base):
    """One observation about an instance and its model; ``origin`` says who made it ("" for the
    assessment, "feedback:USER" or "approval:USER"), so a user's replaced feedback can be undone."""

    __tablename__ = "reputation_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    instance: Mapped[str] = mapped_column(String(128), index=True)
    model: Mapped[str] = mapped_column(String(256), index=True)
    signal: Mapped[str] = mapped_column(String(32))
    origin: Mapped[str] = mapped_column(String(160), default="")
    successes: Mapped[float] = mapped_column(Float)
    failures: Mapped[float] = mapped_column(Float)
    at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


# Columns added after the first release of their table, in the order they were added.
ADDED_COLUMNS: dict[str, tuple[str, ...]] = {"runs": ("owner", "lease_expires", "tenant", "adaptive_start")}


def create_or_upgrade(connection: Connection) -> list[str]:
    """Create the tables a database lacks and add the columns it predates; returns what was added."""
    Base.metadata.create_all(connection)
    return add_missing_columns(connection)


def add_missing_columns(connection: Connection) -> list[str]:
    """Add to an existing database the columns (and their indexes) it predates; returns what was
    added, as ``table.column``. Run inside the store's schema transaction."""
    inspector = inspect(connection)
    added = []
    for table_name, names in ADDED_COLUMNS.items():
        table = Base.metadata.tables[table_name]
        present = {column["name"] for column in inspector.get_columns(table_name)}
        for name in names:
            if name not in present:
                connection.exec_driver_sql(
                    f"ALTER TABLE {table_name} ADD COLUMN {_column_ddl(table.c[name], connection)}"
                )
                added.append(f"{table_name}.{name}")
        for index in table.indexes:
            index.create(connection, checkfirst=True)
    return added


def _column_ddl(column: Column[object], connection: Connection) -> str:
    """``name TYPE [NOT NULL DEFAULT '...']``: a column every existing row can take."""
    ddl = f"{column.name} {column.type.compile(dialect=connection.dialect)}"
    if column.server_default is not None:
        ddl += f" NOT NULL DEFAULT '{column.server_default.arg}'"  # type: ignore[attr-defined]
    return ddl


def to_json(message: Message) -> str:
    return str(json_format.MessageToJson(message, preserving_proto_field_name=True, indent=None))


M = TypeVar("M", bound=Message)


def parse_document(document: str, message: M) -> M:
    """Stored JSON back to a message; fields a newer or older contract dropped are ignored."""
    json_format.Parse(document, message, ignore_unknown_fields=True)
    return message


def encode_token(created: dt.datetime, run_id: str) -> str:
    return base64.urlsafe_b64encode(f"{created.isoformat()}|{run_id}".encode()).decode()


def decode_token(token: str) -> tuple[dt.datetime, str]:
    try:
        created, run_id = base64.urlsafe_b64decode(token.encode()).decode().split("|", 1)
        when = dt.datetime.fromisoformat(created)
        if when.tzinfo is None:
            raise ValueError("token time has no timezone")
        if "\x00" in run_id:
            raise ValueError("token run id holds a NUL")
        return when.astimezone(dt.UTC), run_id
    except (ValueError, OverflowError):  # OverflowError: a forged time that leaves the calendar in UTC
        raise InvalidArgumentError(
            "page_token is not a token returned by ListRuns; omit it for the first page"
        ) from None


def as_utc(value: dt.datetime) -> dt.datetime:
    """SQLite returns naive datetimes; everything stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def run_document(run: pb.Run) -> str:
    """The run as stored: without the approval trail and feedback, which have tables of their own."""
    stored = pb.Run()
    stored.CopyFrom(run)
    del stored.audit[:]
    del stored.feedback[:]
    return to_json(stored)


def run_from_rows(row: RunRow, candidates: list[CandidateRow], failures: list[FailureRow]) -> pb.Run:
    """A run that has no final document yet (RUNNING, or being closed by a sweep) from its rows:
    the swarm's answers in slot order, then the assessed refinement attempts, the failures in the
    order they happened, and the tokens the stored answers and attempts spent."""
    run = pb.Run(
        id=row.id,
        task=row.task,
        status=cast("pb.RunStatus", row.status),
        swarm_size=row.swarm_size,
        quorum=row.quorum,
        error=row.error,
        adaptive_start=row.adaptive_start,
    )
    run.created_at.FromDatetime(as_utc(row.created_at))
    parsed = [parse_document(c.document, pb.Candidate()) for c in candidates]
    swarm = sorted((c for c in parsed if c.origin == pb.CANDIDATE_ORIGIN_SWARM), key=_slot)
    run.candidates.extend([*swarm, *sorted((c for c in parsed if c.origin != pb.CANDIDATE_ORIGIN_SWARM), key=_slot)])
    run.failures.extend(parse_document(f.document, pb.InstanceFailure()) for f in failures)
    for candidate in run.candidates:
        run.usage.prompt_tokens += candidate.usage.prompt_tokens
        run.usage.completion_tokens += candidate.usage.completion_tokens
        run.usage.cost_usd += candidate.usage.cost_usd
    return run


def _slot(candidate: pb.Candidate) -> tuple[int, str]:
    """ "c2" before "c10"; an id without a number after those with one."""
    digits = candidate.id[1:]
    return (int(digits), candidate.id) if digits.isdigit() else (1 << 30, candidate.id)


def run_summary(row: RunRow) -> pb.RunSummary:
    summary = pb.RunSummary(
        id=row.id,
        task=row.task[:200],
        status=cast("pb.RunStatus", row.status),
        swarm_size=row.swarm_size,
        final_overall=row.final_overall,
        consensus_reached=bool(row.consensus_reached),
    )
    summary.created_at.FromDatetime(as_utc(row.created_at))
    return summary


def status_name(status: int) -> str:
    return pb.RunStatus.Name(cast("pb.RunStatus", status)).removeprefix("RUN_STATUS_").lower()


def audit_entry(row: AuditRow) -> pb.AuditEntry:
    entry = pb.AuditEntry(actor=row.actor, action=cast("pb.AuditAction", row.action), comment=row.comment)
    entry.time.FromDatetime(as_utc(row.at))
    return entry


def feedback_message(row: FeedbackRow) -> pb.Feedback:
    feedback = pb.Feedback(
        user=row.author, rating=row.rating, preferred_candidate_id=row.preferred_candidate_id, comment=row.comment
    )
    feedback.time.FromDatetime(as_utc(row.at))
    return feedback


def event_rows(run_id: str, events: list[Event], origin: str, at: dt.datetime) -> list[ReputationEventRow]:
    return [
        ReputationEventRow(
            run_id=run_id,
            instance=e.instance,
            model=e.model,
            signal=e.signal,
            origin=origin,
            successes=e.successes,
            failures=e.failures,
            at=at,
        )
        for e in events
    ]
