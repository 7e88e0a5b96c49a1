"""Runs: creation, queries, and the leases that let exactly one worker drive each run."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, Update, case, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from agents.spec import RunSpec
from backend.domain import EventKind, RunStatus
from backend.store.actions import delete_actions
from backend.store.models import EventRow, ExperimentRow, RoundRow, Run
from backend.store.records import HISTORY_EVENTS

__all__ = [
    "LeaseLost",
    "claim_run",
    "count_runs",
    "create_run",
    "delete_run",
    "fence",
    "forget_after",
    "get_run",
    "list_runs",
    "queued",
    "release_run",
    "renew_lease",
    "requeue",
    "set_status",
    "stop_unclaimed",
]

# A worker may take a run that is queued, or whose worker stopped renewing its lease.
_ACTIVE = (RunStatus.RUNNING, RunStatus.PAUSED)


class LeaseLost(RuntimeError):
    """This worker no longer holds the run's lease: another worker has taken it over."""


async def _changed(session: AsyncSession, statement: Update) -> int:
    """How many rows an UPDATE changed (an UPDATE's result is a CursorResult; the types of
    `AsyncSession.execute` do not say so)."""
    return cast("CursorResult[Any]", await session.execute(statement)).rowcount


def now() -> datetime:
    return datetime.now(UTC)


def queued(spec: RunSpec, **link: Any) -> Run:
    """A new run of `spec`, queued (`link`: its experiment, cell and replicate, if any)."""
    return Run(
        name=spec.name,
        spec=spec.model_dump(mode="json"),
        status=RunStatus.QUEUED,
        seed=spec.seed,
        agents=spec.population.total,
        rounds=spec.rounds,
        round=0,
        attempts=0,
        **link,
    )


async def create_run(session: AsyncSession, *, spec: RunSpec) -> Run:
    run = queued(spec)
    session.add(run)
    await session.commit()
    return run


async def get_run(session: AsyncSession, *, run_id: int) -> Run | None:
    return await session.get(Run, run_id, populate_existing=True)


async def list_runs(
    session: AsyncSession, *, limit: int = 50, offset: int = 0, status: str | None = None
) -> Sequence[Run]:
    query = select(Run).order_by(Run.id.desc()).limit(limit).offset(offset)
    if status is not None:
        query = query.where(Run.status == status)
    return (await session.scalars(query)).all()


async def totals(session: AsyncSession) -> dict[str, Any]:
    """Runs by status, rounds run in all, and the agents of running runs."""
    by_status = dict((await session.execute(select(Run.status, func.count()).group_by(Run.status))).all())
    rounds = (await session.execute(select(func.coalesce(func.sum(Run.round), 0)))).scalar_one()
    running = select(func.coalesce(func.sum(Run.agents), 0)).where(Run.status == RunStatus.RUNNING)
    return {
        "runs": by_status,
        "rounds": int(rounds),
        "agents": int((await session.execute(running)).scalar_one()),
    }


async def statuses(session: AsyncSession, *, run_ids: Collection[int]) -> dict[int, str]:
    """The status of each of these runs that exists, by run id, in one query."""
    if not run_ids:
        return {}
    rows = await session.execute(select(Run.id, Run.status).where(Run.id.in_(run_ids)))
    return {row.id: row.status for row in rows}


async def count_runs(session: AsyncSession, *, status: str | None = None) -> int:
    query = select(func.count()).select_from(Run)
    if status is not None:
        query = query.where(Run.status == status)
    return (await session.execute(query)).scalar_one()


def _may_start() -> Any:
    """A queued run may start unless its experiment is paused or already has `max_parallel` runs
    going (a paused run keeps its hosts, so it counts)."""
    other = aliased(Run)
    going = (
        select(func.count())
        .where(other.experiment_id == ExperimentRow.id, other.status.in_(_ACTIVE))
        .scalar_subquery()
    )
    room = select(ExperimentRow.id).where(
        ExperimentRow.id == Run.experiment_id,
        ExperimentRow.paused.is_(False),
        going < ExperimentRow.max_parallel,
    )
    return Run.experiment_id.is_(None) | room.exists()


def _claimable(at: datetime) -> Any:
    return or_(
        (Run.status == RunStatus.QUEUED) & _may_start(),
        (Run.status.in_(_ACTIVE)) & (or_(Run.lease_expires.is_(None), Run.lease_expires < at)),
    )


async def claim_run(
    session: AsyncSession,
    *,
    worker: str,
    lease_seconds: float,
    run_id: int | None = None,
    driving: Collection[int] = (),
) -> Run | None:
    """Take the oldest claimable run (or run `run_id`) for `worker`, or None if there is none.

    On Postgres the candidate row is locked with `FOR UPDATE SKIP LOCKED`, so racing workers each
    get a different run. Everywhere the UPDATE repeats the claimability test, so of two workers that
    read the same candidate only one changes it (SQLite serialises writers, which does the rest).
    A paused run stays paused: its new worker waits for a resume as the old one did. Taking over
    a lease that expired records that its worker was lost, in the same transaction. The runs
    `worker` is `driving` are never its candidates: its own lease on one may have run out while
    the database was away, and a second driver of it would pass every fence (the same owner).
    """
    at = now()
    query = select(Run.id, Run.lease_owner, Run.round, Run.experiment_id).where(_claimable(at))
    query = query.order_by(Run.id).limit(1)
    if run_id is not None:
        query = query.where(Run.id == run_id)
    if driving:
        query = query.where(Run.id.not_in(driving))
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        query = query.with_for_update(of=Run, skip_locked=True)
    candidate = (await session.execute(query)).one_or_none()
    if candidate is None:
        await session.rollback()
        return None
    if postgres and candidate.experiment_id is not None:
        # Workers claiming runs of one experiment take turns, so that each counts the runs the
        # others started (the UPDATE below checks `max_parallel` again once it has the lock).
        lock = select(ExperimentRow.id).where(ExperimentRow.id == candidate.experiment_id)
        await session.execute(lock.with_for_update())
    claimed = await _changed(
        session,
        update(Run)
        .where(Run.id == candidate.id, _claimable(at))
        .values(
            lease_owner=worker,
            lease_expires=at + timedelta(seconds=lease_seconds),
            attempts=Run.attempts + 1,
            status=case((Run.status == RunStatus.PAUSED, RunStatus.PAUSED), else_=RunStatus.RUNNING),
            started_at=func.coalesce(Run.started_at, at),
        )
        .execution_options(synchronize_session=False),
    )
    if claimed != 1:
        await session.rollback()
        return None
    if candidate.lease_owner is not None:
        lost = {"worker": candidate.lease_owner, "by": worker}
        session.add(
            EventRow(run_id=candidate.id, round=candidate.round, kind=EventKind.WORKER_LOST, payload=lost)
        )
    await session.commit()
    return await get_run(session, run_id=candidate.id)


async def renew_lease(session: AsyncSession, *, run_id: int, worker: str, lease_seconds: float) -> None:
    """Extend the lease; raise `LeaseLost` if another worker holds it now."""
    renewed = await _changed(
        session,
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == worker)
        .values(lease_expires=now() + timedelta(seconds=lease_seconds)),
    )
    await session.commit()
    if renewed != 1:
        raise LeaseLost(f"run {run_id} is no longer leased to {worker}")


async def fence(session: AsyncSession, *, run_id: int, worker: str, **values: Any) -> None:
    """Update the run only while `worker` holds its lease (inside the caller's transaction), so a
    worker that lost the lease can never commit anything for the run."""
    updated = await _changed(
        session,
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == worker)
        .values(**(values or {"lease_owner": worker})),
    )
    if updated != 1:
        raise LeaseLost(f"run {run_id} is no longer leased to {worker}")


async def set_status(
    session: AsyncSession,
    *,
    run_id: int,
    status: RunStatus,
    worker: str | None = None,
    error: str | None = None,
) -> None:
    """Record a new status (fenced by `worker`'s lease when given); a final status ends the lease."""
    values: dict[str, Any] = {"status": status}
    if error is not None:
        values["error"] = error
    if status in (RunStatus.COMPLETED, RunStatus.STOPPED, RunStatus.FAILED):
        values |= {"finished_at": now(), "lease_owner": None, "lease_expires": None}
    if worker is None:
        await session.execute(update(Run).where(Run.id == run_id).values(**values))
    else:
        await fence(session, run_id=run_id, worker=worker, **values)
    await session.commit()


async def release_run(session: AsyncSession, *, run_id: int, worker: str) -> None:
    """Give the lease back without changing the status, so another worker can continue the run."""
    await session.execute(
        update(Run)
        .where(Run.id == run_id, Run.lease_owner == worker)
        .values(lease_owner=None, lease_expires=None)
    )
    await session.commit()


async def forget_after(session: AsyncSession, *, run_id: int, round: int, worker: str) -> None:
    """Delete what was recorded after `round` (the checkpoint a takeover resumes from), so the
    rounds that are run again are not stored twice. The run's history stays: what users did,
    what happened to its workers, and what was spent outside the rounds (`HISTORY_EVENTS`)."""
    await fence(session, run_id=run_id, worker=worker, round=round)
    await delete_actions(session, run_id=run_id, after=round)
    await session.execute(delete(RoundRow).where(RoundRow.run_id == run_id, RoundRow.round > round))
    later = (EventRow.run_id == run_id) & (EventRow.round > round)
    await session.execute(delete(EventRow).where(later, EventRow.kind.not_in(HISTORY_EVENTS)))
    await session.commit()


async def stop_unclaimed(session: AsyncSession, *, run_id: int) -> bool:
    """Stop a run that no worker holds (queued, handed back, or whose worker died) at once;
    False if a worker holds it, which then applies the stop at its next round boundary."""
    at = now()
    unleased = or_(Run.lease_owner.is_(None), Run.lease_expires.is_(None), Run.lease_expires < at)
    stopped = await _changed(
        session,
        update(Run)
        .where(Run.id == run_id, Run.status.in_((RunStatus.QUEUED, *_ACTIVE)), unleased)
        .values(status=RunStatus.STOPPED, finished_at=at, lease_owner=None, lease_expires=None),
    )
    return stopped == 1


async def requeue(session: AsyncSession, *, run_id: int) -> bool:
    """Make a failed run claimable again (the caller commits): its next worker continues from
    its last checkpoint. False if it is not failed (any more)."""
    requeued = await _changed(
        session,
        update(Run)
        .where(Run.id == run_id, Run.status == RunStatus.FAILED)
        .values(status=RunStatus.QUEUED, error=None, finished_at=None, lease_owner=None, lease_expires=None),
    )
    return requeued == 1


async def delete_run(session: AsyncSession, *, run_id: int) -> None:
    """Delete a run and all it recorded (actions explicitly: they carry no foreign key)."""
    await delete_actions(session, run_id=run_id)
    await session.execute(delete(Run).where(Run.id == run_id))
    await session.commit()
