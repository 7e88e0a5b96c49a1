"""The run's command log: pause, resume, stop and inject, kept until a worker applies them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from backend.store.models import CommandRow

__all__ = ["add_command", "applied_injections", "mark_applied", "pending_commands"]


async def add_command(session: AsyncSession, *, run_id: int, action: str, payload: dict[str, Any]) -> None:
    """Log a command for the run's worker (in the caller's transaction)."""
    session.add(CommandRow(run_id=run_id, action=action, payload=payload))


async def pending_commands(session: AsyncSession, *, run_id: int) -> Sequence[CommandRow]:
    """The run's commands no worker has applied yet, oldest first."""
    query = (
        select(CommandRow)
        .where(CommandRow.run_id == run_id, CommandRow.applied_round.is_(None))
        .order_by(CommandRow.id)
    )
    return (await session.scalars(query)).all()


async def mark_applied(session: AsyncSession, *, command_ids: Sequence[int], round: int) -> None:
    """Mark commands applied at the boundary after `round` (in the caller's fenced transaction)."""
    await session.execute(
        update(CommandRow).where(CommandRow.id.in_(command_ids)).values(applied_round=round)
    )


async def applied_injections(
    session: AsyncSession, *, run_id: int, since: int = 0, before: int | None = None
) -> Sequence[CommandRow]:
    """The run's injections applied at boundaries `since` ≤ round (< `before`), in order: the
    ones a rewind to round `since` delivers again, or (with `before`: the run's last stored
    round) the ones its agents received."""
    query = select(CommandRow).where(
        CommandRow.run_id == run_id, CommandRow.action == "inject", CommandRow.applied_round >= since
    )
    if before is not None:
        query = query.where(CommandRow.applied_round < before)
    return (await session.scalars(query.order_by(CommandRow.id))).all()
