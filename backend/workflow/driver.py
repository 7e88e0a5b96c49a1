"""Driving one claimed run: rounds, control commands, checkpoints, and the lease's heartbeat."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

import ray
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.core import Intervention, sum_usage
from agents.host import HostStats
from agents.llm import priced, tokens
from agents.placement import alive_nodes
from agents.scenarios import RoundResult
from agents.simulation import Simulation
from agents.spec import Budget, RunSpec
from backend.live.channel import LiveChannel
from backend.logs import RUN_ID
from backend.settings import Settings
from backend.store import records
from backend.store.models import Run, RunStatus
from backend.store.runs import LeaseLost, fence, forget_after, release_run, renew_lease, set_status
from backend.workflow import checkpoint
from backend.workflow.recorder import Recorder

__all__ = ["RunDriver", "publish_nodes"]

log = logging.getLogger(__name__)

OnRound = Callable[[RoundResult], Awaitable[None] | None]
_PAUSE_POLL = 0.2
_MAX_RECOVERIES = 5  # hosts lost this often in one drive: the run fails instead
_BACKGROUND_CHUNK = 10_000  # backgrounds read and sent to a host at a time, after a takeover
_HOSTS_TTL = 60.0  # seconds a run's hosts stay on the cluster page unless published again


async def publish_nodes(live: LiveChannel) -> None:
    """Tell the dashboard which Ray nodes there are (the API process need not join Ray)."""
    nodes = await asyncio.to_thread(alive_nodes)
    await live.set_nodes([dataclasses.asdict(n) for n in nodes])


class _Interrupted(Exception):
    """Writing the backgrounds was cut short by a stop or a shutdown."""


class RunDriver:
    """Drives a run this worker has claimed until it completes, stops, fails or is taken over.

    Args:
        run: the claimed run.
        sessions: the session factory.
        live: the live channel.
        settings: lease and retention settings; `settings.worker_id` owns the lease.
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
        self.spec = RunSpec.stored(run.spec)
        self.sessions = sessions
        self.live = live
        self.settings = settings
        self.worker = settings.worker_id
        self.on_round = on_round
        self.shutdown = shutdown
        self.status = RunStatus(run.status)
        self._hosts_published = 0.0
        self._spent: dict[str, dict[str, int]] = {}  # the rounds' language-model use so far, per model
        self._recoveries = 0
        self._held: list[dict[str, Any]] = []  # commands taken while writing backgrounds, for _obey

    def __repr__(self) -> str:
        return f"RunDriver(run={self.run.id}, worker={self.worker!r}, status={self.status})"

    async def drive(self) -> RunStatus:
        """Drive the run; return its final status, or raise `LeaseLost` if taken over."""
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
            if (
                heartbeat.done()
                and not heartbeat.cancelled()
                and isinstance(heartbeat.exception(), LeaseLost)
            ):
                raise LeaseLost(f"run {self.run.id} was taken over") from None
            raise
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeaseLost):
                await heartbeat

    async def _heartbeat(self, body: asyncio.Task[RunStatus]) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_seconds / 3)
            try:
                async with self.sessions() as session:
                    await renew_lease(
                        session,
                        run_id=self.run.id,
                        worker=self.worker,
                        lease_seconds=self.settings.lease_seconds,
                    )
            except LeaseLost:
                log.warning("run %s: lease lost, abandoning it", self.run.id)
                body.cancel()
                raise

    async def _drive(self) -> RunStatus:
        run_id, spec = self.run.id, self.spec
        sim = Simulation(spec)
        try:
            async with Recorder(
                self.sessions,
                run_id=run_id,
                worker=self.worker,
                spec=spec,
                checkpoints_kept=self.settings.checkpoints_kept,
            ) as recorder:
                hosts = await sim.start(busy=await self._busy_nodes())
                await self._prepare(sim, recorder, hosts)
                while not sim.done:
                    order = await self._obey(sim, recorder)
                    if order == "stop":
                        break
                    if order == "release":
                        await self._release(sim, recorder)
                        return self.status
                    try:
                        await self._round(sim, recorder)
                    except ray.exceptions.RayActorError as lost:
                        sim = await self._recover(sim, recorder, lost)
                final = RunStatus.COMPLETED if sim.done else RunStatus.STOPPED
                await recorder.flush()
                await self.live.set_state(
                    run_id,
                    actions_written=recorder.actions_written,
                    seconds_writing_actions=recorder.seconds_writing_actions,
                )
                await self._finish(final, sim.round)
                return final
        except (LeaseLost, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("run %s failed", run_id)
            await self._finish(RunStatus.FAILED, self.run.round, error=f"{type(exc).__name__}: {exc}")
            return RunStatus.FAILED
        finally:
            sim.close()

    async def _round(self, sim: Simulation, recorder: Recorder) -> None:
        """One round: step, record, publish, keep to the budget, checkpoint."""
        result = await sim.step()
        assert sim.last_actions is not None
        await recorder.round(result, sim.last_actions)
        await self._publish(sim, result, recorder)
        self._spent = sum_usage([self._spent, result.usage])
        used = await self._used() if result.usage else None
        if used is not None:
            await self.live.set_state(self.run.id, usage=used)  # what /metrics reports
        if not sim.done and (reason := await self._over_budget(used)):
            await self._pause_for_budget(recorder, sim.round, reason, used)
        if sim.round % self.spec.checkpoint_interval == 0 or sim.done:
            await recorder.checkpoint(sim.round, checkpoint.encode(await sim.get_state()))
        if self.on_round is not None and (pending := self.on_round(result)) is not None:
            await pending

    async def _recover(self, sim: Simulation, recorder: Recorder, lost: Exception) -> Simulation:
        """A host died with its node (or alone): place the run anew on the nodes that answer and
        go on from the last checkpoint, so the rounds run again come out the same."""
        self._recoveries += 1
        if self._recoveries > _MAX_RECOVERIES:
            raise RuntimeError(f"lost hosts {self._recoveries} times; giving up") from lost
        gone = await sim.lost_slots()
        nodes_lost = sorted({slot.node_id for slot in gone})
        log.warning("run %s: hosts %s lost on nodes %s", self.run.id, [s.index for s in gone], nodes_lost)
        sim.close()
        await recorder.flush()  # what was handed over is written, so it can be forgotten below
        replacement = Simulation(self.spec)
        hosts = await replacement.start(exclude=nodes_lost, busy=await self._busy_nodes())
        resume_at = await self._rewind(replacement)
        nodes = {h.index: h.node_id for h in hosts}
        async with self.sessions() as session:
            await records.place_agents(session, run_id=self.run.id, slots=replacement.slots, nodes=nodes)
        if self.spec.population.persona is not None:
            await self._restore_personas(replacement)
        await self._publish_hosts(replacement, hosts)
        lost_payload = {"nodes": nodes_lost, "hosts": [s.index for s in gone], "error": str(lost)[:300]}
        await self._event(recorder, resume_at, "node lost", lost_payload)
        recovered = {"from_round": resume_at, "hosts": len(hosts), "nodes": len(set(nodes.values()))}
        await self._event(recorder, resume_at, "recovered", recovered)
        await self.live.set_state(self.run.id, round=resume_at)
        return replacement

    async def _busy_nodes(self) -> dict[str, int]:
        """How many hosts other runs keep on each node, as their workers last reported."""
        busy: dict[str, int] = {}
        for run_id, hosts in (await self.live.all_hosts()).items():
            if run_id != self.run.id:
                for host in hosts:
                    if host.get("node_id"):
                        busy[host["node_id"]] = busy.get(host["node_id"], 0) + 1
        return busy

    async def _rewind(self, sim: Simulation) -> int:
        """Put `sim` at the run's last checkpoint, forgetting what was recorded after it; returns
        the round it stands at."""
        run_id = self.run.id
        async with self.sessions() as session:
            current = await records.stored_round(session, run_id=run_id)
            saved = await records.latest_checkpoint(session, run_id=run_id, at_most=current)
            resume_at = saved.round if saved is not None else 0
            await forget_after(session, run_id=run_id, round=resume_at, worker=self.worker)
            self._spent = await records.usage_totals(session, run_id=run_id)
        if saved is not None:
            await sim.set_state(checkpoint.decode(saved.data))
        return resume_at

    async def _prepare(self, sim: Simulation, recorder: Recorder, hosts: Sequence[HostStats]) -> None:
        """Resume from the last checkpoint after a takeover; store the profiles of a new run.
        `hosts`: the stats of the hosts just started."""
        run_id = self.run.id
        nodes = {h.index: h.node_id for h in hosts}
        await self._publish_hosts(sim, hosts)
        await self.live.set_state(
            run_id, status=RunStatus.RUNNING, round=self.run.round, rounds=self.spec.rounds
        )
        if self.run.attempts > 1 or self.run.round > 0:
            resume_at = await self._rewind(sim)
            await self._event(
                recorder, resume_at, "resumed", {"worker": self.worker, "from_round": resume_at}
            )
        backgrounds = None
        if self.spec.population.persona is not None and not await self._restore_personas(sim):
            try:
                await self._write_personas(sim, recorder)
            except _Interrupted:
                return  # nothing stored: _obey stops the run or hands it back, to be written anew
            backgrounds = sim.backgrounds
        await recorder.profiles(sim.slots, nodes, backgrounds)
        await self._event(recorder, sim.round, "started", {"worker": self.worker, "hosts": len(hosts)})

    async def _write_personas(self, sim: Simulation, recorder: Recorder) -> None:
        """Have the model write every background, showing the progress live. Writing a million
        takes a while: a stop, or this worker shutting down, interrupts it (raises _Interrupted);
        other commands wait for the first round."""
        run_id, total = self.run.id, self.spec.population.total

        async def progress(done: int) -> None:
            await self.live.set_state(run_id, personas=done, personas_total=total)
            self._held += await self.live.take_commands(run_id)
            stopped = any(c.get("action") == "stop" for c in self._held)
            if stopped or (self.shutdown is not None and self.shutdown.is_set()):
                raise _Interrupted

        await progress(0)
        try:
            written, kept = await sim.write_personas(progress)
        except _Interrupted:
            await self._event(recorder, 0, "backgrounds cut short", {"usage": await sim.take_usage()})
            raise
        await self.live.set_state(run_id, personas=total)  # all written: nothing interrupts now
        spent = {"written": written, "kept": kept, "usage": await sim.take_usage()}
        await self._event(recorder, 0, "backgrounds written", spent)
        await recorder.flush()  # the budget is checked against what the store holds

    async def _restore_personas(self, sim: Simulation) -> bool:
        """After a takeover, give the new hosts the backgrounds written before, if all are stored."""
        async with self.sessions() as session:
            stored = await records.count_agents(session, run_id=self.run.id)
            if stored != self.spec.population.total:
                return False
            for slot in sim.slots:
                for start in range(slot.ids.start, slot.ids.stop, _BACKGROUND_CHUNK):
                    ids = range(start, min(start + _BACKGROUND_CHUNK, slot.ids.stop))
                    stored_backgrounds = await records.backgrounds(session, run_id=self.run.id, ids=ids)
                    await sim.set_backgrounds(start, stored_backgrounds)
        return True

    async def _obey(self, sim: Simulation, recorder: Recorder) -> Literal["go", "stop", "release"]:
        """Apply the control commands sent since the last round, and say whether to go on, stop
        the run, or hand it back because this worker is shutting down. While paused, wait here
        (the heartbeat keeps the lease) until resumed or stopped."""
        paused = self.status == RunStatus.PAUSED
        while True:
            if self.shutdown is not None and self.shutdown.is_set():
                return "release"
            held, self._held = self._held, []
            for command in held + await self.live.take_commands(self.run.id):
                action = command.get("action")
                if action == "stop":
                    await self._event(recorder, sim.round, "stopped", {})
                    return "stop"
                if action == "pause" and not paused:
                    paused = True
                    await self._set(RunStatus.PAUSED)
                    await self._event(recorder, sim.round, "paused", {})
                elif action == "resume" and paused:
                    if command.get("budget") is not None:
                        await self._set_budget(recorder, sim.round, command["budget"])
                    if reason := await self._over_budget():
                        refused = {"reason": f"{reason}: raise it to resume"}
                        await self._event(recorder, sim.round, "budget", refused)
                        continue
                    paused = False
                    await self._set(RunStatus.RUNNING)
                    await self.live.set_state(self.run.id, reason=None)
                    await self._event(recorder, sim.round, "resumed", {})
                elif action == "inject":
                    sim.inject(
                        Intervention(command["content"], command.get("where"), bool(command.get("public")))
                    )
                    await self._event(
                        recorder, sim.round, "injected", {k: v for k, v in command.items() if k != "action"}
                    )
            if not paused:
                return "go"
            if time.monotonic() - self._hosts_published > _HOSTS_TTL / 3:
                await self._publish_hosts(sim)  # a paused run's hosts are still there
            await asyncio.sleep(_PAUSE_POLL)

    async def _used(self) -> dict[str, dict[str, int]]:
        """The run's language-model use so far: its rounds', and what was spent outside them
        (backgrounds, and interviews, which the service asks), read from the store."""
        async with self.sessions() as session:
            outside = await records.usage_outside_rounds(session, run_id=self.run.id)
        return sum_usage([self._spent, *outside.values()])

    async def _over_budget(self, used: dict[str, dict[str, int]] | None = None) -> str | None:
        """Why the run's language-model use (`used`, if just read) has reached its budget, if it has."""
        budget = self.spec.budget
        if budget is None:
            return None
        if used is None:
            used = await self._used()
        if budget.tokens is not None and (count := tokens(used)) >= budget.tokens:
            return f"the token budget is spent ({count:,} of {budget.tokens:,})"
        if budget.cost is not None and (cost := priced(self.spec.llm, used)) >= budget.cost:
            return f"the cost budget is spent ({cost:.4f} of {budget.cost:g})"
        return None

    async def _pause_for_budget(
        self, recorder: Recorder, round: int, reason: str, used: dict[str, dict[str, int]] | None
    ) -> None:
        await self._set(RunStatus.PAUSED)
        await self.live.set_state(self.run.id, reason=reason)
        if used is None:
            used = await self._used()
        spent = {"tokens": tokens(used), "cost": priced(self.spec.llm, used)}
        await self._event(recorder, round, "budget", {"reason": reason, **spent})

    async def _set_budget(self, recorder: Recorder, round: int, budget: dict[str, Any]) -> None:
        """A new budget, kept in the run's stored spec so that a worker taking over knows it."""
        self.spec = self.spec.model_copy(update={"budget": Budget.model_validate(budget)})
        async with self.sessions() as session:
            stored = self.spec.model_dump(mode="json")
            await fence(session, run_id=self.run.id, worker=self.worker, spec=stored)
            await session.commit()
        await self._event(recorder, round, "budget raised", {"budget": budget})

    async def _release(self, sim: Simulation, recorder: Recorder) -> None:
        """Hand the run back at a round boundary: checkpoint where it stands, write everything,
        and give up the lease, so another worker continues at once."""
        if sim.round % self.spec.checkpoint_interval:
            await recorder.checkpoint(sim.round, checkpoint.encode(await sim.get_state()))
        await self._event(recorder, sim.round, "released", {"worker": self.worker})
        await recorder.flush()
        held, self._held = self._held, []
        await self.live.give_back(self.run.id, held)  # commands not applied yet: the next worker's
        async with self.sessions() as session:
            await release_run(session, run_id=self.run.id, worker=self.worker)

    async def _publish(self, sim: Simulation, result: RoundResult, recorder: Recorder) -> None:
        run_id = self.run.id
        await self.live.set_state(
            run_id,
            status=self.status,
            round=result.round,
            rounds=self.spec.rounds,
            agents=self.spec.population.total,
            failed=result.failures,
            time=result.time,
        )
        await self.live.emit(
            run_id, "round", result.round, {"stats": result.stats, "failures": result.failures}
        )
        if result.failures:
            assert sim.last_actions is not None
            examples = dict(list(sim.last_actions.errors.items())[:5])
            await self._event(
                recorder, result.round, "failures", {"count": result.failures, "examples": examples}
            )
        # What the scenario found notable this round goes to the event feed.
        for event in result.details.get("events", ()):
            await self._event(recorder, result.round, str(event["kind"]), dict(event.get("payload", {})))
        if messages := len(sim.last_actions.messages) if sim.last_actions else 0:
            await self._event(recorder, result.round, "messages", {"count": messages})
        await self._publish_hosts(sim)
        await publish_nodes(self.live)

    async def _publish_hosts(self, sim: Simulation, hosts: Sequence[HostStats] | None = None) -> None:
        """Show the run's hosts on the cluster page (they expire unless refreshed); `hosts`: their
        stats when the caller has just read them."""
        hosts = hosts if hosts is not None else await sim.host_stats()
        await self.live.set_hosts(self.run.id, [dataclasses.asdict(h) for h in hosts], ttl=_HOSTS_TTL)
        self._hosts_published = time.monotonic()

    async def _event(self, recorder: Recorder, round: int, kind: str, payload: dict[str, Any]) -> None:
        await recorder.event(round, kind, payload)
        await self.live.emit(self.run.id, kind, round, payload)

    async def _set(self, status: RunStatus) -> None:
        async with self.sessions() as session:
            await set_status(session, run_id=self.run.id, status=status, worker=self.worker)
        self.status = status
        await self.live.set_state(self.run.id, status=status)

    async def _finish(self, status: RunStatus, round: int, error: str | None = None) -> None:
        async with self.sessions() as session:
            await set_status(session, run_id=self.run.id, status=status, worker=self.worker, error=error)
        self.status = status
        await self.live.set_state(self.run.id, status=status, error=error)
        await self.live.set_hosts(self.run.id, [])  # its hosts are gone: off the cluster page
        await self.live.emit(self.run.id, status.value, round, {"error": error} if error else {})
