"""Driving one claimed run: rounds, control commands, checkpoints, recovery, and the lease.

Starting a run, taking it over from a worker that died, and recovering from a lost host take one
path: place the hosts, go back to the last checkpoint (if anything was recorded), go on. Faults
that pass (the live layer or the database away for a while) are waited out at the round
boundary; a live layer away for longer than its bound hands the run back, a database away for
longer abandons it to the lease (nothing can be written then), and anything else wrong with the
run fails it, with the reason, without taking the worker down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Literal

import ray
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents import admission
from agents.placement import alive_nodes
from agents.scenarios import RoundResult
from agents.simulation import Simulation
from agents.spec import RunSpec
from backend.domain import EventKind, RunStatus
from backend.live.channel import LiveChannel
from backend.logs import RUN_ID
from backend.settings import Settings
from backend.store import agents as stored_agents
from backend.store import records
from backend.store.models import Run
from backend.store.runs import LeaseLost, forget_after, release_run, renew_lease
from backend.workflow import checkpoint
from backend.workflow.budget import BudgetKeeper
from backend.workflow.commands import Control
from backend.workflow.outage import LIVE, STORE, Unavailable
from backend.workflow.placing import dead_nodes, place, restore_personas
from backend.workflow.publishing import Publisher
from backend.workflow.recorder import Recorder

__all__ = ["OnRound", "RunDriver"]

log = logging.getLogger(__name__)

OnRound = Callable[[RoundResult], Awaitable[None] | None]
Order = Literal["go", "stop", "release"]
_PAUSE_POLL = 0.2
_MAX_RECOVERIES = 8  # hosts lost this often in one drive: the run fails instead
# A host died; or one was being placed on a node that died meanwhile (Ray had not noticed yet
# when the nodes were read): both are recovered from, not a reason to fail the run.
HOSTS_LOST = (ray.exceptions.RayActorError, ray.exceptions.ActorUnschedulableError)
_RECOVERY_PAUSE = 0.5  # seconds before trying again when hosts die while being recovered; doubles


class _Interrupted(Exception):
    """Writing the backgrounds was cut short by a stop or a shutdown."""


class RunDriver:
    """Drives a run this worker has claimed until it completes, stops, fails or is handed back.

    Args:
        run: the claimed run.
        sessions: the session factory.
        live: the live channel.
        settings: lease, outage and retention settings; `settings.worker_id` owns the lease.
        on_round: called after every round (the CLI prints it).
        shutdown: once set, the run is handed back at the next round boundary.
    """

    def __init__(
        self,
        run: Run,
        *,
        sessions: async_sessionmaker[AsyncSession],
        live: LiveChannel,
        settings: Settings,
        on_round: OnRound | None = None,
        shutdown: asyncio.Event | None = None,
    ) -> None:
        self.run = run
        self.sessions = sessions
        self.settings = settings
        self.worker = settings.worker_id
        self.on_round = on_round
        self.shutdown = shutdown
        bounds = {LIVE: settings.live_outage_seconds, STORE: settings.store_outage_seconds}
        self.publisher = Publisher(run.id, worker=self.worker, sessions=sessions, live=live, bounds=bounds)
        # Read from the run in `_drive`, where a bad spec fails the run instead of the worker.
        self.spec: RunSpec
        self.sim: Simulation  # the run's simulation: a new one after hosts are lost
        self.budget: BudgetKeeper
        self.control: Control
        self._recoveries = 0
        self._checkpointed = -1  # the round of the last checkpoint this driver took

    def __repr__(self) -> str:
        return f"RunDriver(run={self.run.id}, worker={self.worker!r})"

    @property
    def _recorder(self) -> Recorder:
        """The run's recorder, which `_drive` opens before anything is recorded."""
        recorder = self.publisher.recorder
        assert recorder is not None, "a recorder runs while the run is driven"
        return recorder

    async def drive(self) -> RunStatus:
        """Drive the run; return its status when it ends or is handed back. Raises `LeaseLost` if
        it was taken over, `Unavailable` if the database stayed away (the lease then expires)."""
        named = RUN_ID.set(self.run.id)  # the lines of this task and the tasks it starts name the run
        try:
            return await self._drive_named()
        finally:
            RUN_ID.reset(named)

    async def _drive_named(self) -> RunStatus:
        body = asyncio.create_task(self._drive())
        heartbeat = asyncio.create_task(self._heartbeat(body))
        try:
            return await body
        except asyncio.CancelledError:
            # Wait for the body to clean up (roll back its transactions, stop its hosts) before
            # giving up: a transaction left open would keep the run's row locked.
            body.cancel()
            await asyncio.gather(body, return_exceptions=True)
            if heartbeat.done() and not heartbeat.cancelled() and (lost := heartbeat.exception()) is not None:
                raise lost from None
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeaseLost, Unavailable):
                await heartbeat

    async def _heartbeat(self, body: asyncio.Task[RunStatus]) -> None:
        """Renew the lease; a lease lost to another worker, or a database away for longer than
        its bound, ends the drive."""
        lease = self.settings.lease_seconds

        async def renew(session: AsyncSession) -> None:
            await renew_lease(session, run_id=self.run.id, worker=self.worker, lease_seconds=lease)

        while True:
            await asyncio.sleep(lease / 3)
            try:
                await self.publisher.store(renew)
            except (LeaseLost, Unavailable) as e:
                if self.publisher.letting_go:
                    return  # the run ended or was handed back: its lease went with it
                log.warning("run %s: %s; abandoning it", self.run.id, e)
                body.cancel()
                raise

    async def _drive(self) -> RunStatus:
        try:
            # A stored spec that no longer validates, an unknown scenario or kind: the run fails,
            # the worker goes on with the next one.
            self.spec = RunSpec.stored(self.run.spec)
            self.sim = Simulation(self.spec)
            # Checked at submission against the cluster last reported; here against the cluster
            # as it is (a node lost later is recovered from, not a reason to fail).
            if self.run.round == 0 and (unfit := admission.problems(self.spec, alive_nodes())):
                raise admission.DoesNotFit("; ".join(unfit))
        except Exception as exc:
            return await self._fail(exc, self.run.round)
        self.budget = BudgetKeeper(self.spec, self.publisher, self.run.experiment_id)
        self.control = Control(RunStatus(self.run.status), self.publisher, self.budget, self.shutdown)
        try:
            async with Recorder(
                self.sessions,
                run_id=self.run.id,
                worker=self.worker,
                spec=self.spec,
                checkpoints_kept=self.settings.checkpoints_kept,
                bounds=self.publisher.bounds,
                on_outage=self.publisher.heard,
            ) as recorder:
                self.publisher.recorder = recorder
                try:
                    return await self._loop()
                except Unavailable as outage:
                    if outage.service != LIVE:
                        raise
                    self.publisher.live_lost = True  # hand the run back through the database alone
                    return await self._release(self.sim, reason=str(outage))
        except (LeaseLost, asyncio.CancelledError, Unavailable):
            raise
        except Exception as exc:
            return await self._fail(exc, self.sim.round)
        finally:
            await self.sim.aclose()  # the run's current hosts, started again after a recovery too

    async def _loop(self) -> RunStatus:
        await self._start(self.sim)
        # Writing the backgrounds (or interviews) may have spent the budget before any round: the
        # run pauses before its next round, not after it.
        running = self.control.status == RunStatus.RUNNING and not self.sim.done
        if running and (reason := await self.budget.over()):
            await self.control.pause_for_budget(self.sim.round, reason, None)
        while not self.sim.done:
            try:
                order = await self.control.obey(self.sim)
                if order == "release":
                    return await self._release(self.sim, reason="the worker is shutting down")
                if order == "stop":
                    break
                await self._round(self.sim)
            except HOSTS_LOST as lost:
                await self._recover(lost)
        if self.sim.done:
            await self.publisher.finish(RunStatus.COMPLETED, self.sim.round)
            self.control.status = RunStatus.COMPLETED
            await self.publisher.state(
                actions_written=self._recorder.actions_written,
                seconds_writing_actions=self._recorder.seconds_writing_actions,
            )
        return self.control.status

    # -- one path for starting, taking over and recovering ------------------------------------

    async def _start(self, sim: Simulation) -> None:
        """Place the run's hosts; go back to the last checkpoint if anything was recorded; write
        the backgrounds (or give back those written before) and store where the agents are."""
        hosts = await place(sim, self.publisher)
        await self.publisher.hosts(sim, hosts)
        spec = self.spec
        await self.publisher.state(
            status=self.control.status, round=self.run.round, rounds=spec.rounds, agents=spec.population.total
        )
        if self.run.attempts > 1 or self.run.round > 0:
            at = await self._rewind(sim)
            await self.publisher.event(at, EventKind.RESUMED, {"worker": self.worker, "from_round": at})
        backgrounds = None
        if spec.population.persona is not None and not await restore_personas(
            sim, self.publisher, spec.population.total
        ):
            try:
                await self._write_personas(sim)
            except _Interrupted:
                return  # nothing stored: _obey stops the run or hands it back, to be written anew
            backgrounds = sim.backgrounds
        nodes = {h.index: h.node_id for h in hosts}
        await self._recorder.placed(sim.slots, nodes, backgrounds)
        await self.publisher.event(sim.round, EventKind.STARTED, {"worker": self.worker, "hosts": len(hosts)})

    async def _rewind(self, sim: Simulation) -> int:
        """Put `sim` at the run's last checkpoint, forgetting what was recorded after it (but the
        run's history); returns the round it stands at."""
        run_id = self.run.id

        async def rewind(session: AsyncSession) -> tuple[int, bytes | None]:
            current = await records.stored_round(session, run_id=run_id)
            saved = await records.latest_checkpoint(session, run_id=run_id, at_most=current)
            at = saved.round if saved is not None else 0
            await forget_after(session, run_id=run_id, round=at, worker=self.worker)
            return at, saved.data if saved is not None else None

        at, data = await self.publisher.store(rewind)
        if data is not None:
            await sim.set_state(checkpoint.decode(data))
        self._checkpointed = at
        await self.budget.rewound()
        await self.control.rewound(at)
        await self.publisher.state(round=at)
        return at

    async def _recover(self, lost: Exception) -> None:
        """Hosts died: start them again where they were if their node lives, or place the run
        anew on the nodes that answer if a node died too, and go on from the last checkpoint,
        so the rounds run again come out the same.

        A node that just died is still alive to Ray for a while (until it misses enough health
        checks, ~15 s): hosts started again on it die at once. That is another loss, recovered
        from after a pause that gives Ray time to notice."""
        while True:
            self._recoveries += 1
            if self._recoveries > _MAX_RECOVERIES:
                raise RuntimeError(f"lost hosts {self._recoveries} times; giving up") from lost
            try:
                await self._recover_once(lost)
                return
            except HOSTS_LOST as again:
                log.warning("run %s: hosts lost again while recovering; retrying", self.run.id)
                lost = again
                await asyncio.sleep(_RECOVERY_PAUSE * 2 ** (self._recoveries - 1))

    async def _recover_once(self, lost: Exception) -> None:
        sim = self.sim
        gone = await sim.lost_slots()
        dead = dead_nodes(gone)
        log.warning("run %s: hosts %s lost (dead nodes: %s)", self.run.id, [s.index for s in gone], dead)
        await sim.aclose()
        await self._recorder.flush()  # written, so it can be forgotten
        replacement = self.sim = Simulation(self.spec)  # from here on, the one to close at the end
        hosts = await place(replacement, self.publisher, exclude=dead, keep=None if dead else sim.slots)
        at = await self._rewind(replacement)
        nodes = {h.index: h.node_id for h in hosts}
        if dead:

            async def moved(session: AsyncSession) -> None:
                await stored_agents.place(session, run_id=self.run.id, slots=replacement.slots, nodes=nodes)
                await session.commit()

            await self.publisher.store(moved)
        if self.spec.population.persona is not None:
            await restore_personas(replacement, self.publisher, self.spec.population.total)
        await self.publisher.hosts(replacement, hosts)
        where = sorted({slot.node_id for slot in gone})
        what = {"hosts": [s.index for s in gone], "error": str(lost)[:300]}
        if dead:
            await self.publisher.event(at, EventKind.NODE_LOST, {"nodes": dead, **what})
        else:
            await self.publisher.event(at, EventKind.HOST_LOST, {"nodes": where, **what})
        recovered = {"from_round": at, "hosts": len(hosts), "nodes": len(set(nodes.values()))}
        await self.publisher.event(at, EventKind.RECOVERED, recovered)

    async def _write_personas(self, sim: Simulation) -> None:
        """Have the model write every background, showing the progress live. Writing a million
        takes a while: a stop, or this worker shutting down, interrupts it (raises _Interrupted);
        other commands wait for the first round."""
        total = self.spec.population.total

        async def progress(done: int) -> None:
            await self.publisher.state(personas=done, personas_total=total)
            stopped = any(c.action == "stop" for c in await self.control.pending())
            if stopped or (self.shutdown is not None and self.shutdown.is_set()):
                raise _Interrupted

        await progress(0)
        try:
            written, kept = await sim.write_personas(progress)
        except _Interrupted:
            await self.publisher.event(0, EventKind.BACKGROUNDS_CUT_SHORT, {"usage": await sim.take_usage()})
            raise
        await self.publisher.state(personas=total)  # all written: nothing interrupts now
        spent = {"written": written, "kept": kept, "usage": await sim.take_usage()}
        await self.publisher.event(0, EventKind.BACKGROUNDS_WRITTEN, spent)
        await self._recorder.flush()  # the budget reads the store

    # -- rounds ---------------------------------------------------------------------------------

    async def _round(self, sim: Simulation) -> None:
        """One round: step, record, publish, keep to the budget, checkpoint."""
        result = await sim.step()
        assert sim.last_actions is not None
        await self._recorder.round(result, sim.last_actions)
        await self.publisher.round(sim, result, self.control.status)
        self.budget.add(result.usage)
        used = await self.budget.used() if result.usage else None
        if used is not None:
            await self.publisher.state(usage=used)  # what /metrics reports
        if not sim.done and (reason := await self.budget.over(used)):
            await self.control.pause_for_budget(sim.round, reason, used)
        if sim.round % self.spec.checkpoint_interval == 0 or sim.done:
            await self._checkpoint(sim)
        if self.on_round is not None and (pending := self.on_round(result)) is not None:
            await pending

    async def _checkpoint(self, sim: Simulation) -> None:
        data = await asyncio.to_thread(checkpoint.encode, await sim.get_state())
        await self._recorder.checkpoint(sim.round, data)
        self._checkpointed = sim.round

    # -- ending ---------------------------------------------------------------------------------

    async def _release(self, sim: Simulation, reason: str) -> RunStatus:
        """Hand the run back at a round boundary: checkpoint where it stands, write everything,
        and give up the lease, so another worker continues (at once, or once the live layer is
        back). Commands not applied yet stay in the log for it."""
        publisher = self.publisher
        if sim.hosts and sim.round > self._checkpointed:
            await self._checkpoint(sim)
        await publisher.event(sim.round, EventKind.RELEASED, {"worker": self.worker, "reason": reason})
        await self._recorder.flush()

        async def release(session: AsyncSession) -> None:
            await release_run(session, run_id=self.run.id, worker=self.worker)

        publisher.letting_go = True
        await publisher.store(release)
        return self.control.status

    async def _fail(self, exc: Exception, round: int) -> RunStatus:
        """The run fails with the reason on its page; the worker lives on."""
        log.error("run %s failed", self.run.id, exc_info=exc)
        error = f"{type(exc).__name__}: {exc}"[:2000]
        await self.publisher.finish(RunStatus.FAILED, round, error=error, in_order=False)
        return RunStatus.FAILED
