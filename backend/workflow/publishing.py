"""What a run tells the world: its status and events, durably in the database and at once over
the live layer, and where its hosts are. Every call rides out a passing outage of either."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.host import HostStats
from agents.placement import alive_nodes
from agents.scenarios import RoundResult
from agents.simulation import Simulation
from backend.domain import FINAL, EventKind, RunStatus
from backend.live.channel import LiveChannel
from backend.store import commands, records
from backend.store.models import Run
from backend.store.runs import fence, set_status
from backend.workflow.outage import LIVE, Outage, Service, Unavailable, patiently
from backend.workflow.recorder import Recorder

__all__ = ["HOSTS_TTL", "Publisher", "publish_nodes"]

log = logging.getLogger(__name__)

T = TypeVar("T")
HOSTS_TTL = 60.0  # seconds a run's hosts stay on the cluster page unless published again
# Seconds between two publications of the hosts and nodes while rounds go by: asking every host
# for its stats and Ray for its nodes took longer than a round of a million agents.
HOSTS_EVERY = 1.0


async def publish_nodes(live: LiveChannel) -> None:
    """Tell the dashboard which Ray nodes there are (the API process need not join Ray)."""
    nodes = await asyncio.to_thread(alive_nodes)
    await live.set_nodes([dataclasses.asdict(n) for n in nodes])


class Publisher:
    """The one writer of a run's status, events and live state, for the worker driving it.

    Args:
        run_id: the run.
        worker: the worker holding its lease (every database write is fenced by it).
        sessions: the session factory.
        live: the live channel.
        bounds: how long to wait out an outage of each service.
    """

    def __init__(
        self,
        run_id: int,
        *,
        worker: str,
        sessions: async_sessionmaker[AsyncSession],
        live: LiveChannel,
        bounds: dict[Service, float],
    ) -> None:
        self.run_id = run_id
        self.worker = worker
        self.sessions = sessions
        self.live = live
        self.bounds = bounds
        self.recorder: Recorder | None = None  # events go through it, in order with the rounds
        self.live_lost = False  # the live layer outlasted its bound: the run is handed back without it
        self.letting_go = False  # the run is being ended or handed back: its lease goes on purpose
        self.hosts_published = 0.0
        self._outages: list[Outage] = []

    def __repr__(self) -> str:
        return f"Publisher(run={self.run_id}, worker={self.worker!r})"

    def heard(self, outage: Outage) -> None:
        """An outage was ridden out: it goes on the run's record at the next round boundary."""
        self._outages.append(outage)

    async def report_outages(self, at: int) -> None:
        """Record the outages ridden out since last asked, as events of round `at`."""
        found, self._outages = self._outages, []
        for outage in found:
            await self.event(
                at, EventKind.OUTAGE, {"service": outage.service, "seconds": round(outage.seconds, 1)}
            )

    async def store(self, write: Callable[[AsyncSession], Awaitable[T]]) -> T:
        """`write` in a session of its own, again after a database outage that passes."""

        async def attempt() -> T:
            async with self.sessions() as session:
                return await write(session)

        return await patiently(attempt, self.bounds, self.heard)

    async def live_call(self, call: Callable[[], Awaitable[Any]]) -> None:
        """`call` the live layer, again after an outage that passes; skipped once it was lost."""
        if not self.live_lost:
            await patiently(call, self.bounds, self.heard)

    async def state(self, **fields: Any) -> None:
        await self.live_call(lambda: self.live.set_state(self.run_id, **fields))

    async def event(self, round: int, kind: str, payload: dict[str, Any]) -> None:
        """Record an event (in order with the rounds) and show it live."""
        assert self.recorder is not None, "events are recorded while a recorder runs"
        await self.recorder.event(round, kind, payload)
        await self.live_call(lambda: self.live.emit(self.run_id, kind, round, payload))

    async def transition(
        self,
        status: RunStatus | None,
        round: int,
        kind: str | None = None,
        payload: dict[str, Any] | None = None,
        *,
        applied: Sequence[int] = (),
        error: str | None = None,
        in_order: bool = True,
    ) -> None:
        """Change the run's status (None: keep it) in the database with its event (`kind`,
        `payload`) and the commands it applies, in one fenced transaction, then live. With
        `in_order`, what the recorder holds is written first, so the event follows the rounds
        before it."""
        payload = payload or {}
        if in_order and self.recorder is not None:
            await self.recorder.flush()

        async def write(session: AsyncSession) -> None:
            if status in FINAL:
                run = await session.get(Run, self.run_id)
                if run is not None and run.status == status:
                    return  # an earlier try committed, but its answer was lost with the connection
            if kind is not None:
                await records.add_event(session, run_id=self.run_id, round=round, kind=kind, payload=payload)
            if applied:
                await commands.mark_applied(session, command_ids=applied, round=round)
            if status is None:
                await fence(session, run_id=self.run_id, worker=self.worker)
                await session.commit()
            else:
                await set_status(session, run_id=self.run_id, status=status, worker=self.worker, error=error)

        await self.store(write)
        if status is not None:
            await self.state(status=status, error=error)
        if kind is not None:
            await self.live_call(lambda: self.live.emit(self.run_id, kind, round, payload))

    async def apply(
        self,
        command_ids: Sequence[int],
        round: int,
        kind: str | None = None,
        payload: dict[str, Any] | None = None,
    ) -> None:
        """Mark commands applied at this boundary, with their event if any, the status unchanged."""
        await self.transition(None, round, kind, payload, applied=command_ids)

    async def finish(self, status: RunStatus, round: int, error: str | None = None, **kw: Any) -> None:
        """End the run with a final status; its hosts leave the cluster page. A live layer that
        stays away does not undo it: the database has the last word."""
        payload = {"error": error} if error else {}
        self.letting_go = True
        try:
            await self.transition(status, round, status.value, payload, error=error, **kw)
            await self.live_call(lambda: self.live.set_hosts(self.run_id, []))
        except Unavailable as outage:
            if outage.service != LIVE:
                raise
            log.warning("run %s is %s, but the live layer did not hear it: %s", self.run_id, status, outage)

    async def round(self, sim: Simulation, result: RoundResult, status: RunStatus) -> None:
        """A round's news: the live state, its summary (stored with the round by the recorder),
        what it delivered of what was injected (and to how many agents), its failures, what the
        scenario found notable, and (at most every `HOSTS_EVERY` seconds) the hosts and the nodes."""
        actions, spec = sim.last_actions, sim.spec
        await self.state(
            status=status,
            round=result.round,
            rounds=spec.rounds,
            agents=spec.population.total,
            failed=result.failures,
            time=result.time,
        )
        summary = {"stats": result.stats, "failures": result.failures}
        await self.live_call(lambda: self.live.emit(self.run_id, EventKind.ROUND, result.round, summary))
        for injected, reached in sim.delivered:
            sent = {"content": injected.content, "where": injected.where, "public": injected.public}
            await self.event(result.round, EventKind.DELIVERED, sent | {"reached": reached})
        if result.failures and actions is not None:
            examples = dict(list(actions.errors.items())[:5])
            await self.event(
                result.round, EventKind.FAILURES, {"count": result.failures, "examples": examples}
            )
        for event in result.details.get("events", ()):
            await self.event(result.round, str(event["kind"]), dict(event.get("payload", {})))
        if messages := len(actions.messages) if actions else 0:
            await self.event(result.round, EventKind.MESSAGES, {"count": messages})
        if time.monotonic() - self.hosts_published >= HOSTS_EVERY:
            await self.hosts(sim)
            await self.nodes()

    async def hosts(self, sim: Simulation, hosts: Sequence[HostStats] | None = None) -> None:
        """Show the run's hosts on the cluster page (they expire unless refreshed); `hosts`: their
        stats when the caller has just read them."""
        found = hosts if hosts is not None else await sim.host_stats()
        rows = [dataclasses.asdict(h) for h in found]
        await self.live_call(lambda: self.live.set_hosts(self.run_id, rows, ttl=HOSTS_TTL))
        self.hosts_published = time.monotonic()

    async def nodes(self) -> None:
        await self.live_call(lambda: publish_nodes(self.live))

    async def busy_nodes(self) -> dict[str, int]:
        """How many hosts other runs keep on each node, as their workers last reported."""
        found: dict[int, list[dict[str, Any]]] = {}

        async def read() -> None:
            found.update(await self.live.all_hosts())

        await self.live_call(read)
        busy: dict[str, int] = {}
        for run_id, hosts in found.items():
            if run_id != self.run_id:
                for host in hosts:
                    if host.get("node_id"):
                        busy[host["node_id"]] = busy.get(host["node_id"], 0) + 1
        return busy
