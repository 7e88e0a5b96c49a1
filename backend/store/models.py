"""The database schema: runs, where their agents are hosted (and backgrounds written for them),
rounds, actions (in chunks), events and checkpoints; experiments (many runs compared) and surveys
(questions put to a run's agents).

One schema for Postgres and SQLite: JSON columns are JSONB on Postgres.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, NamedTuple

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from backend.domain import RunStatus

__all__ = [
    "ActionChunkRow",
    "ActionFailureRow",
    "AgentHostRow",
    "BackgroundRow",
    "Base",
    "CheckpointRow",
    "CommandRow",
    "EventRow",
    "ExperimentRow",
    "LegacyAgentRow",
    "RoundRow",
    "Run",
    "SignInRow",
    "SurveyAnswerRow",
    "SurveyRow",
]

Json = JSON().with_variant(JSONB(), "postgresql")
# A spec as it was written: JSONB would sort its keys (by length first), and the order of a spec's
# categories and factors decides who its agents are and how an experiment's cells are numbered.
Written = JSON()
# SQLite only auto-increments INTEGER PRIMARY KEY columns, not BIGINT ones.
Id = BigInteger().with_variant(Integer(), "sqlite")
# ...and without AUTOINCREMENT it hands out the largest id + 1, so deleting the newest run would
# give its id (its bookmarks, its `run-5-*` exports) to the next one. Postgres' sequences never
# go back. For every table whose ids people see: runs, events (the feed's cursor), commands.
NEVER_REUSED = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dict[str, Any]: Json, datetime: DateTime(timezone=True)}


class ExperimentRow(Base):
    """Many runs of one base spec, its factors crossed (see `agents.experiment`). Its runs are
    ordinary runs that name it and their cell; its status is theirs, read from them, but for
    `paused`, which keeps its queued runs from starting."""

    __tablename__ = "experiments"
    __table_args__ = NEVER_REUSED

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(Written)
    max_parallel: Mapped[int] = mapped_column(Integer)
    paused: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_experiment", "experiment_id", "cell", "replicate"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(200))
    spec: Mapped[dict[str, Any]] = mapped_column(Written)
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED, index=True)
    seed: Mapped[int] = mapped_column(BigInteger)
    agents: Mapped[int] = mapped_column(BigInteger)
    rounds: Mapped[int] = mapped_column(Integer)
    round: Mapped[int] = mapped_column(Integer, default=0, doc="the last round completed and stored")
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0, doc="how many times a worker claimed it")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    experiment_id: Mapped[int | None] = mapped_column(ForeignKey("experiments.id", ondelete="SET NULL"))
    cell: Mapped[int | None] = mapped_column(Integer, doc="the experiment's cell this run is of")
    replicate: Mapped[int | None] = mapped_column(Integer)

    def __repr__(self) -> str:
        return (
            f"Run(id={self.id}, name={self.name!r}, status={self.status}, round={self.round}/{self.rounds})"
        )


class AgentHostRow(Base):
    """Where a run's agents are hosted: a host's range of ids (`first_id` to `end_id`, exclusive)
    and its node. Who the agents are is not stored: their profiles follow from the run's spec and
    seed (`agents.population`), and only what a model wrote for them is (`BackgroundRow`)."""

    __tablename__ = "agent_hosts"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    host: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_id: Mapped[int] = mapped_column(BigInteger)
    end_id: Mapped[int] = mapped_column(BigInteger)
    node: Mapped[str | None] = mapped_column(String(64))


class BackgroundRow(Base):
    """A background a language model wrote for an agent (a run with personas)."""

    __tablename__ = "backgrounds"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    background: Mapped[str] = mapped_column(Text)


class LegacyAgentRow(Base):
    """The stored profile of an agent of a run that today's code would rebuild otherwise (one
    recorded before names were drawn as now): kept by migration 0010, so nothing is lost, and
    given back by its downgrade. The pages show the profiles rebuilt from the spec."""

    __tablename__ = "legacy_agents"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(200))
    attributes: Mapped[dict[str, Any]]
    background: Mapped[str] = mapped_column(Text)
    host: Mapped[int | None] = mapped_column(Integer)
    node: Mapped[str | None] = mapped_column(String(64))


class RoundRow(Base):
    __tablename__ = "rounds"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    stats: Mapped[dict[str, Any]]
    details: Mapped[dict[str, Any]]
    time: Mapped[float] = mapped_column(Float)
    failures: Mapped[int] = mapped_column(BigInteger)
    # Language-model use per model: calls, failed, prompt_tokens, completion_tokens.
    usage: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class RoundStats(NamedTuple):
    """A stored round without its details: what the run page's progress, table and figure show."""

    round: int
    stats: dict[str, Any]
    time: float
    failures: int
    usage: dict[str, Any]


class ActionChunkRow(Base):
    """The actions of up to `actions.CHUNK` consecutive recorded agents in one round, in packed
    arrays (see `backend.store.actions`): `first_id` to `end_id` (exclusive) is the span of ids
    it covers, `count` how many agents it holds (all of the span, or the few of a sample: then
    `ids` lists them). `numbers` is each agent's number (NaN for none), `payloads` its other
    payload as JSON text, `tokens` what it spent (both null when no agent has any), `failures`
    how many failed (their reasons are in `action_failures`).

    The key is (run, round, first agent): a round's chunks arrive in key order, and an agent's
    chunk in a round is one index probe. No foreign key, as before: deleting a run deletes its
    actions explicitly.
    """

    __tablename__ = "action_chunks"

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    end_id: Mapped[int] = mapped_column(BigInteger)
    count: Mapped[int] = mapped_column(Integer)
    ids: Mapped[bytes | None] = mapped_column(LargeBinary)
    numbers: Mapped[bytes] = mapped_column(LargeBinary)
    payloads: Mapped[bytes | None] = mapped_column(LargeBinary)
    tokens: Mapped[bytes | None] = mapped_column(LargeBinary)
    failures: Mapped[int] = mapped_column(Integer, default=0)


class ActionFailureRow(Base):
    """An agent's failed action in a round, with the reason: few, and filtered on (the agents
    page's "failed"), so a row each beside the chunk that holds the action."""

    __tablename__ = "action_failures"

    run_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    error: Mapped[str] = mapped_column(Text)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_run_id", "run_id", "id"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class CheckpointRow(Base):
    """Everything needed to continue a run after `round`: agent and scenario state, compressed."""

    __tablename__ = "checkpoints"

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    round: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class CommandRow(Base):
    """A control command sent to a run (pause, resume, stop, inject): the run's command log.

    A worker applies pending commands at a round boundary and marks each with that boundary's
    round (`applied_round`: after that round, before the next), so a worker taking the run over
    applies what is still pending, and replays injections applied after the checkpoint it goes
    back to at the rounds they were first applied: each is delivered once, in one round.
    """

    __tablename__ = "commands"
    __table_args__ = (Index("ix_commands_run_id", "run_id", "id"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]]
    applied_round: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())


class SignInRow(Base):
    """A dashboard sign-in that is still valid: its session cookie carries the id, this table only
    its SHA-256 (a copy of the database gives no session). Signing out deletes the row, signing out
    everywhere deletes them all, so every API process refuses the cookie at once."""

    __tablename__ = "sign_ins"

    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now(), index=True)


class SurveyRow(Base):
    """Questions put to a sample of a run's agents (see `agents.survey`), at `round`."""

    __tablename__ = "surveys"
    __table_args__ = (Index("ix_surveys_run_id", "run_id", "id"), NEVER_REUSED)

    id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    round: Mapped[int] = mapped_column(Integer, doc="the last round the run had recorded when asked")
    spec: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    agents: Mapped[int] = mapped_column(BigInteger, default=0, doc="agents in the sample")
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(server_default=func.now())
    finished_at: Mapped[datetime | None]


class SurveyAnswerRow(Base):
    """One agent's answer to one question of a survey: its text, what it was read as (`value` for
    a number, `choice` for an option), or why there is none (`error`: skipped, unreadable, failed)."""

    __tablename__ = "survey_answers"

    survey_id: Mapped[int] = mapped_column(ForeignKey("surveys.id", ondelete="CASCADE"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    question: Mapped[int] = mapped_column(Integer, primary_key=True)
    answer: Mapped[str | None] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float)
    choice: Mapped[str | None] = mapped_column(String(200))
    error: Mapped[str | None] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer, default=0)
