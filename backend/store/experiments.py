"""Experiments: creating one with all its runs, reading them, and pausing its queued runs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from agents.core import sum_usage
from agents.experiment import ExperimentSpec, Planned
from agents.llm import LLMSpec
from agents.spec import Budget
from backend.domain import EventKind
from backend.store.models import EventRow, ExperimentRow, RoundRow, Run
from backend.store.records import SPENDING_EVENTS
from backend.store.runs import queued

__all__ = [
    "budget_of",
    "count_experiments",
    "create_experiment",
    "experiment_runs",
    "get_experiment",
    "list_experiments",
    "progress",
    "round_stats",
    "set_paused",
    "set_spec",
    "uses",
]


async def create_experiment(
    session: AsyncSession, *, spec: ExperimentSpec, planned: Sequence[Planned]
) -> tuple[ExperimentRow, list[Run]]:
    """The experiment and every run it plans, queued, in one transaction: a worker can claim the
    first run only once all of them exist."""
    experiment = ExperimentRow(
        name=spec.name, spec=spec.model_dump(mode="json"), max_parallel=spec.max_parallel, paused=False
    )
    session.add(experiment)
    await session.flush()
    runs = [
        queued(p.spec, experiment_id=experiment.id, cell=p.cell.index, replicate=p.replicate) for p in planned
    ]
    session.add_all(runs)
    await session.flush()
    session.add_all(
        EventRow(
            run_id=run.id,
            round=0,
            kind=EventKind.QUEUED,
            payload={"name": run.name, "experiment": experiment.id},
        )
        for run in runs
    )
    await session.commit()
    return experiment, runs


async def get_experiment(session: AsyncSession, *, experiment_id: int) -> ExperimentRow | None:
    return await session.get(ExperimentRow, experiment_id, populate_existing=True)


async def list_experiments(
    session: AsyncSession, *, limit: int = 50, offset: int = 0
) -> Sequence[ExperimentRow]:
    query = select(ExperimentRow).order_by(ExperimentRow.id.desc()).limit(limit).offset(offset)
    return (await session.scalars(query)).all()


async def count_experiments(session: AsyncSession) -> int:
    return (await session.execute(select(func.count()).select_from(ExperimentRow))).scalar_one()


async def experiment_runs(session: AsyncSession, *, experiment_id: int) -> Sequence[Run]:
    """The experiment's runs, cell by cell, each cell's replicates in order."""
    query = select(Run).where(Run.experiment_id == experiment_id).order_by(Run.cell, Run.replicate, Run.id)
    return (await session.scalars(query)).all()


async def progress(session: AsyncSession, *, experiment_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """Per experiment: its runs by status, and the rounds done and planned over them all."""
    if not experiment_ids:
        return {}
    query = (
        select(Run.experiment_id, Run.status, func.count(), func.sum(Run.round), func.sum(Run.rounds))
        .where(Run.experiment_id.in_(experiment_ids))
        .group_by(Run.experiment_id, Run.status)
    )
    found: dict[int, dict[str, Any]] = {i: {"runs": {}, "rounds": 0, "planned": 0} for i in experiment_ids}
    for experiment_id, status, count, done, planned in (await session.execute(query)).all():
        of = found[cast(int, experiment_id)]
        of["runs"][status] = count
        of["rounds"] += int(done or 0)
        of["planned"] += int(planned or 0)
    return found


async def round_stats(
    session: AsyncSession, *, run_ids: Sequence[int]
) -> dict[int, list[tuple[int, dict[str, Any], float]]]:
    """Each run's stored rounds as (round, statistics, seconds), in order, in one query."""
    found: dict[int, list[tuple[int, dict[str, Any], float]]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return found
    query = (
        select(RoundRow.run_id, RoundRow.round, RoundRow.stats, RoundRow.time)
        .where(RoundRow.run_id.in_(run_ids))
        .order_by(RoundRow.run_id, RoundRow.round)
    )
    for run_id, round, stats, seconds in (await session.execute(query)).all():
        found[run_id].append((round, stats, seconds))
    return found


async def set_paused(session: AsyncSession, *, experiment_id: int, paused: bool) -> None:
    """Whether the experiment's queued runs may start (the caller commits)."""
    await session.execute(
        update(ExperimentRow).where(ExperimentRow.id == experiment_id).values(paused=paused)
    )


async def budget_of(session: AsyncSession, *, experiment_id: int) -> Budget | None:
    """The experiment's budget across its runs, as it stands now (a resume may have raised it)."""
    spec = await session.scalar(select(ExperimentRow.spec).where(ExperimentRow.id == experiment_id))
    budget = (spec or {}).get("budget")
    return None if budget is None else Budget.model_validate(budget)


async def uses(
    session: AsyncSession, *, experiment_id: int
) -> list[tuple[LLMSpec | None, dict[str, dict[str, int]]]]:
    """Each run's language-model models (its spec's `llm`, for the prices) and its use so far: its
    stored rounds' and what it spent outside them, as `budget.stored_use` counts a run's."""
    of = Run.experiment_id == experiment_id
    parts: dict[int, list[dict[str, dict[str, int]]]] = {}
    for run_id, usage in await session.execute(select(RoundRow.run_id, RoundRow.usage).join(Run).where(of)):
        parts.setdefault(run_id, []).append(usage)
    outside = (
        select(EventRow.run_id, EventRow.payload).join(Run).where(of, EventRow.kind.in_(SPENDING_EVENTS))
    )
    for run_id, payload in await session.execute(outside):
        parts.setdefault(run_id, []).append(payload.get("usage", {}))
    specs = await session.execute(select(Run.id, Run.spec).where(of, Run.id.in_(parts)))
    return [(_models(spec.get("llm")), sum_usage(parts[run_id])) for run_id, spec in specs]


def _models(llm: Any) -> LLMSpec | None:
    return None if llm is None else LLMSpec.model_validate(llm)


async def set_spec(session: AsyncSession, *, experiment_id: int, spec: dict[str, Any]) -> None:
    """A new spec for the experiment (a raised budget; the caller commits)."""
    await session.execute(update(ExperimentRow).where(ExperimentRow.id == experiment_id).values(spec=spec))
