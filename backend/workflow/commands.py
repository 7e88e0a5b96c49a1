"""The commands a run's worker obeys at round boundaries, read from the run's command log.

The log is in the database, so a command outlives the worker it was sent to: a new worker
applies what is still pending, and after going back to a checkpoint it delivers again, at the
rounds they were first delivered, the injections applied since (the rounds after a checkpoint
are run again, and so must their injections be: each reaches its agents once, in one round).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from agents.core import Intervention
from backend.store import commands
from backend.store.models import CommandRow
from backend.workflow.publishing import Publisher

__all__ = ["CommandLog", "intervention"]


def intervention(payload: Mapping[str, Any]) -> Intervention:
    return Intervention(payload["content"], payload.get("where"), bool(payload.get("public")))


class CommandLog:
    """A run's pending commands, and the injections to deliver again after a rewind."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher
        self._again: dict[int, list[Intervention]] = {}

    def __repr__(self) -> str:
        return f"CommandLog(run={self.publisher.run_id}, again={sorted(self._again)})"

    async def pending(self) -> Sequence[CommandRow]:
        async def read(session: AsyncSession) -> Sequence[CommandRow]:
            return await commands.pending_commands(session, run_id=self.publisher.run_id)

        return await self.publisher.store(read)

    async def rewound(self, round: int) -> None:
        """The run went back to round `round`: the injections applied since come again."""

        async def read(session: AsyncSession) -> Sequence[CommandRow]:
            return await commands.applied_injections(session, run_id=self.publisher.run_id, since=round)

        self._again = defaultdict(list)
        for command in await self.publisher.store(read):
            assert command.applied_round is not None
            self._again[command.applied_round].append(intervention(command.payload))

    def again(self, round: int) -> list[Intervention]:
        """The injections first applied at the boundary after `round`, to deliver once more."""
        return self._again.pop(round, [])
