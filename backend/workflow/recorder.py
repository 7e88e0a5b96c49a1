"""The recorder: writes a run's results in the background, in order, fenced by the lease.

The round loop hands each round to the recorder and goes on with the next one; the recorder
writes rounds, actions, events and checkpoints in the order they were handed over, one
transaction per round. A small queue bounds how far the loop may run ahead of the database.
Every transaction first checks that this worker still holds the run's lease, so a worker that
was taken over can never add a row. A transaction cut off by a database outage is tried again
until the outage outlasts its bound; one whose commit went through unacknowledged is not
written twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any

import numpy as np
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from agents.core import ActionBatch
from agents.placement import Slot
from agents.scenarios import RoundResult
from agents.spec import RecordSample, RunSpec
from backend.domain import EventKind
from backend.store import actions as stored_actions
from backend.store import agents as stored_agents
from backend.store import records
from backend.store.models import BackgroundRow
from backend.store.runs import LeaseLost, fence
from backend.workflow.outage import Outage, Service, Unavailable, patiently

__all__ = ["Recorder"]

log = logging.getLogger(__name__)

_BACKGROUND_CHUNK = 50_000
_Job = Callable[[AsyncSession], Awaitable[None]]


Backgrounds = Callable[[range], Awaitable[list[str]]]


class Recorder:
    """Writes one run's records for one worker.

    Args:
        sessions: the session factory.
        run_id: the run.
        worker: this worker's id (the lease owner).
        spec: the run's spec (what to record).
        checkpoints_kept: how many checkpoints to keep.
        bounds: how long to wait out an outage, per service.
        on_outage: hears of every outage the writes rode out.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        run_id: int,
        worker: str,
        spec: RunSpec,
        checkpoints_kept: int = 2,
        bounds: dict[Service, float],
        on_outage: Callable[[Outage], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.run_id = run_id
        self.worker = worker
        self.spec = spec
        self.checkpoints_kept = checkpoints_kept
        self.bounds = bounds
        self.on_outage = on_outage
        self._queue: asyncio.Queue[_Job | None] = asyncio.Queue(maxsize=2)
        self._task: asyncio.Task[None] | None = None
        self._placed: asyncio.Task[None] | None = None
        self._sample = self._sampled_ids(spec)
        self.actions_written = 0
        self.seconds_writing_actions = 0.0

    def __repr__(self) -> str:
        return f"Recorder(run={self.run_id}, pending={self._queue.qsize()})"

    async def __aenter__(self) -> Recorder:
        self._task = asyncio.create_task(self._write_all(), name=f"recorder-{self.run_id}")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, *exc: BaseException | TracebackType | None
    ) -> None:
        if exc_type is None:
            await self._drain()
            return
        if not issubclass(exc_type, LeaseLost | Unavailable | asyncio.CancelledError):
            # The run failed: what it did before is still its record, and a write cut off in the
            # middle could hold SQLite's lock against the failure's own.
            try:
                await self._drain()
                return
            except Exception:
                log.exception("run %s: its last records could not be written", self.run_id)
        tasks = [t for t in (self._task, self._placed) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @staticmethod
    def _sampled_ids(spec: RunSpec) -> np.ndarray | None:
        """The agents whose actions are stored (sorted): None for all, none, or a seeded sample."""
        if spec.record == "all":
            return None
        if spec.record == "none":
            return np.empty(0, dtype=np.int64)
        assert isinstance(spec.record, RecordSample)
        total = spec.population.total
        size = min(spec.record.sample, total)
        chosen = np.random.default_rng([spec.seed, 0x5A4D]).choice(total, size=size, replace=False)
        return np.sort(chosen).astype(np.int64)

    async def _put(self, job: _Job) -> None:
        if self._task is None:
            raise RuntimeError("the recorder is not running")
        if self._task.done():
            await self._task  # raises what stopped the writer (e.g. LeaseLost)
        await self._queue.put(job)

    async def _write_all(self) -> None:
        while (job := await self._queue.get()) is not None:
            await self._patiently(job)

    async def _patiently(self, job: _Job) -> None:
        """Write `job` in a transaction of its own, again after an outage that passes."""

        async def attempt() -> None:
            async with self.sessions() as session:
                await job(session)
                await session.commit()

        await patiently(attempt, self.bounds, self.on_outage)

    async def flush(self) -> None:
        """Wait until everything handed over is written; raise what failed, if anything."""
        await self._drain()
        self._task = asyncio.create_task(self._write_all(), name=f"recorder-{self.run_id}")

    async def _drain(self) -> None:
        """Write everything handed over and stop the writer."""
        if self._task is None:
            return
        if not self._task.done():
            await self._queue.put(None)
        await self._task
        if self._placed is not None:
            await self._placed

    # -- what can be recorded -----------------------------------------------------------------

    async def placed(
        self, slots: Sequence[Slot], nodes: dict[int, str | None], backgrounds: Backgrounds | None = None
    ) -> None:
        """Store where the agents are hosted and, with `backgrounds` (read from the hosts), the
        backgrounds written for them, once per run: beside the rounds rather than before them,
        as nothing in a round waits for them. A takeover finds them complete, or starts over.
        (Who the agents are is not stored: it follows from the spec, see `backend.store.agents`.)"""

        async def write(session: AsyncSession) -> None:
            if backgrounds is not None:
                await self._write_backgrounds(session, slots, backgrounds)
            # Placed last, in the same transaction: a run is placed with every background, or not.
            await fence(session, run_id=self.run_id, worker=self.worker)
            await stored_agents.place(session, run_id=self.run_id, slots=slots, nodes=nodes)

        self._placed = asyncio.create_task(self._patiently(write), name=f"placed-{self.run_id}")

    async def _write_backgrounds(
        self, session: AsyncSession, slots: Sequence[Slot], backgrounds: Backgrounds
    ) -> None:
        run_id = self.run_id
        # The run's row is locked (fenced) only after the COPY: holding it for the whole COPY
        # would make every round's write wait. A zombie's rows would fail its fence.
        if await stored_agents.count_backgrounds(session, run_id=run_id) == self.spec.population.total:
            return
        await session.execute(delete(BackgroundRow).where(BackgroundRow.run_id == run_id))
        connection = await session.connection()
        for slot in slots:
            for start in range(slot.ids.start, slot.ids.stop, _BACKGROUND_CHUNK):
                ids = range(start, min(start + _BACKGROUND_CHUNK, slot.ids.stop))
                written = await backgrounds(ids)
                await stored_agents.save_backgrounds(connection, run_id=run_id, start=start, written=written)

    async def round(self, result: RoundResult, actions: ActionBatch) -> None:
        run_id, sample = self.run_id, self._sample
        # The actions are packed into chunks in a thread, beside the writing of the rounds before.
        packing = None
        if sample is None or len(sample):
            packing = asyncio.ensure_future(
                asyncio.to_thread(self._encode, run_id, result.round, actions, sample)
            )

        tried = False

        async def write(session: AsyncSession) -> None:
            nonlocal tried
            if tried and await records.get_round(session, run_id=run_id, round=result.round) is not None:
                return  # an earlier try committed, but its answer was lost with the connection
            tried = True
            await fence(session, run_id=run_id, worker=self.worker, round=result.round)
            await records.save_round(session, run_id=run_id, result=result)
            summary = {"stats": records.plain_stats(result.stats), "failures": result.failures}
            await records.add_event(
                session, run_id=run_id, round=result.round, kind=EventKind.ROUND, payload=summary
            )
            if packing is not None:
                encoded, seconds = await packing
                started = time.perf_counter()
                await stored_actions.write_round(await session.connection(), encoded)
                self.actions_written += encoded.actions
                self.seconds_writing_actions += seconds + time.perf_counter() - started

        await self._put(write)

    @staticmethod
    def _encode(
        run_id: int, round: int, actions: ActionBatch, sample: np.ndarray | None
    ) -> tuple[stored_actions.Encoded, float]:
        started = time.perf_counter()
        encoded = stored_actions.encode_round(run_id, round, actions, sample)
        return encoded, time.perf_counter() - started

    async def event(self, round: int, kind: str, payload: dict[str, Any]) -> None:
        async def write(session: AsyncSession) -> None:
            await fence(session, run_id=self.run_id, worker=self.worker)
            await records.add_event(session, run_id=self.run_id, round=round, kind=kind, payload=payload)

        await self._put(write)

    async def checkpoint(self, round: int, data: bytes) -> None:
        async def write(session: AsyncSession) -> None:
            await fence(session, run_id=self.run_id, worker=self.worker)
            await records.save_checkpoint(
                session, run_id=self.run_id, round=round, data=data, keep=self.checkpoints_kept
            )

        await self._put(write)
