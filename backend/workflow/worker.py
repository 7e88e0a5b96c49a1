"""Workers: claim runs with a lease and drive them, any number of them, on any machine."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time

from redis.exceptions import RedisError

from backend.domain import RunStatus
from backend.runtime import Runtime
from backend.store.models import Run
from backend.store.runs import LeaseLost, claim_run
from backend.workflow.driver import OnRound, RunDriver
from backend.workflow.outage import Unavailable, transient
from backend.workflow.presence import PRESENCE_EVERY, announce, withdraw
from backend.workflow.publishing import publish_nodes

__all__ = ["Worker"]

log = logging.getLogger(__name__)


class Worker:
    """Claims queued runs (and runs whose worker died) and drives them, up to
    `settings.worker_runs` at a time (an experiment's runs side by side)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.id = runtime.settings.worker_id
        self.driving: dict[int, asyncio.Task[RunStatus | None]] = {}  # the runs `serve` drives now

    def __repr__(self) -> str:
        return f"Worker({self.id!r})"

    async def claim(self, run_id: int | None = None) -> Run | None:
        async with self.runtime.sessions() as session:
            return await claim_run(
                session,
                worker=self.id,
                lease_seconds=self.runtime.settings.lease_seconds,
                run_id=run_id,
                driving=list(self.driving),
            )

    async def drive(
        self, run: Run, on_round: OnRound | None = None, shutdown: asyncio.Event | None = None
    ) -> RunStatus | None:
        """Drive a claimed run; None if another worker took it over meanwhile, or if the
        database stayed away too long (its lease then expires and a worker takes it over).
        Once `shutdown` is set, the run is handed back at the next round boundary (still
        running, lease released)."""
        log.info("worker %s drives run %s (attempt %s)", self.id, run.id, run.attempts)
        driver = RunDriver(
            run,
            sessions=self.runtime.sessions,
            live=self.runtime.live,
            settings=self.runtime.settings,
            on_round=on_round,
            shutdown=shutdown,
        )
        try:
            return await driver.drive()
        except LeaseLost:
            log.warning("worker %s lost run %s to another worker", self.id, run.id)
        except Unavailable as outage:
            log.error("worker %s abandons run %s: %s", self.id, run.id, outage)
        return None

    async def serve(self, stop: asyncio.Event, *, exit_when_idle: bool = False) -> int:
        """Drive runs until `stop` is set (or, with `exit_when_idle`, until none is left);
        returns how many runs were driven. No run's trouble, and no outage of the database or
        the live layer, ends the loop: the worker waits and tries again. Meanwhile the worker
        says in the live layer that it is there (see `presence`)."""
        presence = asyncio.create_task(self._present(stop))
        try:
            return await self._serve(stop, exit_when_idle)
        finally:
            presence.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await presence
            # Bounded: a live layer that does not answer must not keep the worker from stopping.
            with contextlib.suppress(RedisError, OSError, TimeoutError):
                await asyncio.wait_for(withdraw(self.runtime.live, self.runtime.settings), PRESENCE_EVERY)

    async def _serve(self, stop: asyncio.Event, exit_when_idle: bool) -> int:
        driven = 0
        away: str | None = None  # the service this worker waits for, said once
        try:
            while not stop.is_set():
                try:
                    # No run is claimed while the live layer is away: its driver would only wait
                    # for it (and hand it back past the bound, to be claimed again, and so on).
                    if len(self.driving) < self.runtime.settings.worker_runs:
                        await self.runtime.live.ping()
                        run = await self.claim()
                        away = None
                        if run is not None:
                            self._start(run, stop)
                            driven += 1
                            continue  # another may be waiting
                        if exit_when_idle and not self.driving:
                            break
                        await publish_nodes(self.runtime.live)
                except Exception as e:
                    if (service := transient(e)) is None:
                        log.exception("worker %s: unexpected error; going on", self.id)
                    elif service != away:
                        away = service
                        log.warning(
                            "worker %s: the %s is unreachable (%s); waiting for it", self.id, service, e
                        )
                await self._idle(stop)
        finally:
            # Stopping: each driver hands its run back at its next round boundary (`stop` is
            # their shutdown), so wait for them.
            await asyncio.gather(*self.driving.values(), return_exceptions=True)
        return driven

    def _start(self, run: Run, stop: asyncio.Event) -> None:
        task = asyncio.create_task(self.drive(run, shutdown=stop))
        self.driving[run.id] = task
        task.add_done_callback(functools.partial(self._ended, run.id))

    def _ended(self, run_id: int, task: asyncio.Task[RunStatus | None]) -> None:
        """A drive ended: its place is free. A drive fails its run on the run's own trouble; an
        error that escapes it is the worker's, said here (the serve loop goes on)."""
        del self.driving[run_id]
        if not task.cancelled() and (error := task.exception()) is not None:
            log.error(
                "worker %s: driving run %s ended in an unexpected error", self.id, run_id, exc_info=error
            )

    async def _idle(self, stop: asyncio.Event) -> None:
        """Wait until it is time to look for runs again, a run ends (a slot frees), or `stop`."""
        waits = [asyncio.ensure_future(stop.wait()), *self.driving.values()]
        await asyncio.wait(
            waits, timeout=self.runtime.settings.poll_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        waits[0].cancel()

    async def _present(self, stop: asyncio.Event) -> None:
        """Say every few seconds, whatever the loop is doing (a run takes long), that this
        worker is alive and which run it drives; a live layer away is waited out in silence
        (the serve loop says so)."""
        since = time.time()
        while not stop.is_set():
            try:
                await announce(
                    self.runtime.live,
                    self.runtime.settings,
                    runs=sorted(self.driving),
                    free=self.runtime.settings.worker_runs - len(self.driving),
                    since=since,
                )
            except Exception as e:  # never the worker's end: it is only not seen for a while
                log.debug("worker %s could not say it is alive: %s", self.id, e)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PRESENCE_EVERY)
