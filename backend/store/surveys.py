"""Surveys of a run's agents: the surveys, their sample, their answers, and the answers counted."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    case,
    func,
    insert,
    literal,
    literal_column,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from backend.store.actions import RecordedAction, actions_of
from backend.store.models import EventRow, SurveyAnswerRow, SurveyRow
from backend.store.runs import now

__all__ = [
    "ACTIVE",
    "ANSWER_COLUMNS",
    "add_answers",
    "answer_counts",
    "answer_samples",
    "answered",
    "answers_query",
    "create_survey",
    "finish",
    "get_survey",
    "list_answers",
    "list_surveys",
    "mark",
    "recent_actions",
    "set_event_payload",
    "surveys_by_id",
]

# A survey still being asked; its other statuses are final: completed, failed, budget, interrupted.
ACTIVE = ("queued", "running")
ANSWER_COLUMNS = ("agent_id", "question", "answer", "value", "choice", "error", "tokens")


async def create_survey(
    session: AsyncSession, *, run_id: int, round: int, spec: dict[str, Any], agents: int
) -> SurveyRow:
    survey = SurveyRow(run_id=run_id, round=round, spec=spec, status="queued", agents=agents)
    session.add(survey)
    await session.flush()
    return survey


async def get_survey(session: AsyncSession, *, run_id: int, survey_id: int) -> SurveyRow | None:
    survey = await session.get(SurveyRow, survey_id)
    return survey if survey is not None and survey.run_id == run_id else None


async def surveys_by_id(session: AsyncSession, *, ids: Collection[int]) -> Sequence[SurveyRow]:
    return (await session.scalars(select(SurveyRow).where(SurveyRow.id.in_(ids)))).all()


async def list_surveys(session: AsyncSession, *, run_id: int) -> Sequence[SurveyRow]:
    """The run's surveys, newest first."""
    query = select(SurveyRow).where(SurveyRow.run_id == run_id).order_by(SurveyRow.id.desc())
    return (await session.scalars(query)).all()


async def mark(session: AsyncSession, *, survey_id: int, status: str) -> None:
    await session.execute(update(SurveyRow).where(SurveyRow.id == survey_id).values(status=status))


async def finish(
    session: AsyncSession,
    *,
    survey_ids: Collection[int],
    status: str,
    error: str | None = None,
    asker: bool = False,
) -> int:
    """End the surveys still being asked among `survey_ids` with `status`; how many it ended.

    A reader marks `interrupted` a survey whose asker has not said lately that it asks it; that
    is a guess (the asker may only have been cut off from the live layer for a while), so the
    `asker`'s own end, when it comes, replaces it: it knows how the survey ended."""
    ending = (*ACTIVE, "interrupted") if asker else ACTIVE
    result = await session.execute(
        update(SurveyRow)
        .where(SurveyRow.id.in_(survey_ids), SurveyRow.status.in_(ending))
        .values(status=status, error=error, finished_at=now())
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def recent_actions(
    session: AsyncSession, *, run_id: int, ids: Collection[int], rounds: range
) -> dict[int, list[RecordedAction]]:
    """The actions of the agents `ids` in `rounds`, by agent, oldest first."""
    return await actions_of(session, run_id=run_id, ids=ids, rounds=rounds)


async def add_answers(session: AsyncSession, *, survey_id: int, rows: Iterable[Mapping[str, Any]]) -> None:
    values = [{"survey_id": survey_id, **row} for row in rows]
    if values:
        await session.execute(insert(SurveyAnswerRow), values)


async def answered(session: AsyncSession, *, survey_ids: Collection[int]) -> dict[int, int]:
    """How many answers (read, unreadable, skipped or failed) each survey has stored."""
    query = (
        select(SurveyAnswerRow.survey_id, func.count())
        .where(SurveyAnswerRow.survey_id.in_(survey_ids))
        .group_by(SurveyAnswerRow.survey_id)
    )
    return {row[0]: row[1] for row in (await session.execute(query)).all()}


def answers_query(survey_id: int) -> Select[Any]:
    """A survey's answers (`ANSWER_COLUMNS`), by agent then question."""
    columns = (getattr(SurveyAnswerRow, c) for c in ANSWER_COLUMNS)
    query = select(*columns).where(SurveyAnswerRow.survey_id == survey_id)
    return query.order_by(SurveyAnswerRow.agent_id, SurveyAnswerRow.question)


async def list_answers(
    session: AsyncSession, *, survey_id: int, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of a survey's answers, by agent then question, and how many there are."""
    page = await session.execute(answers_query(survey_id).limit(limit).offset(offset))
    count = (await answered(session, survey_ids=[survey_id])).get(survey_id, 0)
    return [dict(row._mapping) for row in page], count


def _outcome() -> ColumnElement[str]:
    """What became of an answer: `read` (or free text), `unreadable`, `skipped` or `failed`, from
    how its error begins."""
    error = SurveyAnswerRow.error
    return case(
        (error.is_(None), literal("read")),
        (error.like("unreadable:%"), literal("unreadable")),
        (error.like("skipped:%"), literal("skipped")),
        else_=literal("failed"),
    )


async def answer_counts(
    session: AsyncSession, *, survey_id: int, by_agent: bool = False
) -> list[tuple[int, int | None, str, float | None, str | None, int]]:
    """How many answers each question got, per outcome and value or option (per agent too with
    `by_agent`, for counting by a group of agents): (question, agent or None, outcome, value,
    choice, count). The database counts: a million answers come back as a few hundred rows (a
    number question's values, at most), unless by agent."""
    agent: ColumnElement[Any] = SurveyAnswerRow.__table__.c.agent_id if by_agent else literal_column("NULL")
    query = select(
        SurveyAnswerRow.question,
        agent,
        _outcome(),
        SurveyAnswerRow.value,
        SurveyAnswerRow.choice,
        func.count(),
    ).where(SurveyAnswerRow.survey_id == survey_id)
    # By position: Postgres would not see the outcome's CASE, its literals bound as parameters, as
    # the same expression twice.
    query = query.group_by(*(text(str(n)) for n in range(1, 6)))
    return [(q, a, o, v, c, n) for q, a, o, v, c, n in (await session.execute(query)).all()]


async def answer_samples(
    session: AsyncSession, *, survey_id: int, question: int, limit: int
) -> Sequence[tuple[int, str]]:
    """The first `limit` free-text answers to a question: (agent, answer)."""
    query = (
        select(SurveyAnswerRow.agent_id, SurveyAnswerRow.answer)
        .where(
            SurveyAnswerRow.survey_id == survey_id,
            SurveyAnswerRow.question == question,
            SurveyAnswerRow.error.is_(None),
        )
        .order_by(SurveyAnswerRow.agent_id)
        .limit(limit)
    )
    return [(agent, answer or "") for agent, answer in (await session.execute(query)).all()]


async def set_event_payload(session: AsyncSession, *, event_id: int, payload: dict[str, Any]) -> None:
    """A survey's event says what it has asked and spent so far (the run's bill reads it)."""
    await session.execute(update(EventRow).where(EventRow.id == event_id).values(payload=payload))
