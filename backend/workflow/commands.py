"""Control: the run's status as its worker keeps it, and the commands that change it, read from
the run's command log at round boundaries.

Reading the log at every boundary cost 5-7 ms, half a round of a million agents, so the live
layer carries a hint: a count of the commands sent to the run, which the API raises after it
commits one. The log is read when the count moved, when the live layer does not answer, and at
least once a second whatever it says (a hint lost with a restart of Redis costs a command that
long).

The log is in the database, so a command outlives the worker it was sent to: a new worker
applies what is still pending, and after going back to a checkpoint it delivers again, at the
rounds they were first delivered, the injections applied since (the rounds after a checkpoint
are run again, and so must their injections be: each reaches its agents once, in one round).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

from agents.core import Intervention
from agents.simulation import Simulation
from backend.domain import EventKind, RunStatus
from backend.store import commands
from backend.store.models import CommandRow
from backend.workflow.budget import BudgetKeeper, Usage
from backend.workflow.publishing import HOSTS_TTL, Publisher

__all__ = ["Control", "Order", "intervention"]

Order = Literal["go", "stop", "release"]
_PAUSE_POLL = 0.2  # seconds between looks at the command log while paused
_READ_EVERY = 1.0  # seconds: the log is read this often even when the hint says nothing was sent


def intervention(payload: Mapping[str, Any]) -> Intervention:
    return Intervention(payload["content"], payload.get("where"), bool(payload.get("public")))


class Control:
    """Keeps a run's status and obeys its commands.

    Args:
        status: the run's status when claimed (a paused run stays paused).
        publisher: writes status changes, events and applied commands.
        budget: holds the run to its language-model budget.
        shutdown: once set, the run is handed back at the next round boundary.
    """

    def __init__(
        self,
        status: RunStatus,
        publisher: Publisher,
        budget: BudgetKeeper,
        shutdown: asyncio.Event | None = None,
    ) -> None:
        self.status = status
        self.publisher = publisher
        self.budget = budget
        self.shutdown = shutdown
        self._again: dict[int, list[Intervention]] = {}
        self._sent: int | None = None  # the hint when the log was last read
        self._read_at = -_READ_EVERY

    def __repr__(self) -> str:
        return f"Control(run={self.publisher.run_id}, status={self.status}, again={sorted(self._again)})"

    async def pending(self) -> Sequence[CommandRow]:
        """The run's commands no worker has applied yet, oldest first: none without a look at the
        log when the hint says none was sent since the last look, which found none, less than
        `_READ_EVERY` ago."""
        publisher = self.publisher
        sent = None
        if not publisher.live_lost:
            with contextlib.suppress(RedisError):  # then the log is read: the hint is a shortcut
                sent = await publisher.live.commands_sent(publisher.run_id)
        if sent is not None and sent == self._sent and time.monotonic() - self._read_at < _READ_EVERY:
            return ()

        async def read(session: AsyncSession) -> Sequence[CommandRow]:
            return await commands.pending_commands(session, run_id=publisher.run_id)

        self._read_at = time.monotonic()
        found = await publisher.store(read)
        # The hint was read before the log, so a command committed since moves it again; commands
        # found may be left to a later look (writing the backgrounds only looks for a stop).
        self._sent = None if found else sent
        return found

    async def rewound(self, round: int) -> None:
        """The run went back to round `round`: the injections applied since come again."""

        async def read(session: AsyncSession) -> Sequence[CommandRow]:
            return await commands.applied_injections(session, run_id=self.publisher.run_id, since=round)

        self._again = defaultdict(list)
        for command in await self.publisher.store(read):
            assert command.applied_round is not None
            self._again[command.applied_round].append(intervention(command.payload))

    async def obey(self, sim: Simulation) -> Order:
        """Apply the commands sent since the last round, and say whether to go on, stop the run,
        or hand it back because this worker is shutting down. While paused, wait here (the
        heartbeat keeps the lease) until resumed or stopped."""
        publisher, at = self.publisher, sim.round
        await publisher.report_outages(at)
        for again in self._again.pop(at, []):
            sim.inject(again)  # delivered in the next round before the rewind: delivered in it again
        while True:
            if self.shutdown is not None and self.shutdown.is_set():
                return "release"
            for command in await self.pending():
                if await self._apply(sim, command) == "stop":
                    return "stop"
            if self.status != RunStatus.PAUSED:
                return "go"
            if time.monotonic() - publisher.hosts_published > HOSTS_TTL / 3:
                await publisher.hosts(sim)  # a paused run's hosts are still there
            await asyncio.sleep(_PAUSE_POLL)

    async def _apply(self, sim: Simulation, command: CommandRow) -> Literal["go", "stop"]:
        """Apply one command at this boundary and mark it applied, with its effect, at once."""
        at, action, payload, ids = sim.round, command.action, command.payload, [command.id]
        publisher = self.publisher
        if action == "stop":
            await publisher.finish(RunStatus.STOPPED, at, applied=ids)
            self.status = RunStatus.STOPPED
            return "stop"
        if action == "pause" and self.status != RunStatus.PAUSED:
            await publisher.transition(RunStatus.PAUSED, at, EventKind.PAUSED, applied=ids)
            self.status = RunStatus.PAUSED
        elif action == "resume" and self.status == RunStatus.PAUSED:
            if payload.get("budget") is not None:
                await self.budget.raise_to(at, payload["budget"])
            if reason := await self.budget.over():
                await publisher.apply(ids, at, EventKind.BUDGET, {"reason": f"{reason}: raise it to resume"})
                return "go"
            await publisher.transition(RunStatus.RUNNING, at, EventKind.RESUMED, applied=ids)
            await publisher.state(reason=None)
            self.status = RunStatus.RUNNING
        elif action == "inject":
            await publisher.apply(ids, at, EventKind.INJECTED, dict(payload))
            sim.inject(intervention(payload))
        else:  # a pause of a paused run, a resume of a running one: nothing to do
            await publisher.apply(ids, at)
        return "go"

    async def pause_for_budget(self, round: int, reason: str, used: Usage | None) -> None:
        used = used if used is not None else await self.budget.used()
        payload = {"reason": reason, **self.budget.price(used)}
        await self.publisher.transition(RunStatus.PAUSED, round, EventKind.BUDGET, payload)
        await self.publisher.state(reason=reason)
        self.status = RunStatus.PAUSED
        if self.budget.experiment_spent:
            await self.budget.hold_experiment()
