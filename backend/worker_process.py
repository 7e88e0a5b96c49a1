"""The `myriad worker` process that `myriad serve` starts beside itself on the embedded default.

Runs are driven in a process of their own, not in the web server's: pages never starve rounds and
rounds never starve pages (each process has its own event loop, its own GIL). The two are one
process tree and stop together:

- serve stopped (Ctrl-C, SIGTERM): it asks the worker to stop (SIGTERM), so the worker hands its
  run back at the next round boundary and stops its Ray cluster, and waits for it (within a
  bound, then kills it);
- serve killed (SIGKILL, a crash): the worker learns at once from the kernel (Linux's
  `PR_SET_PDEATHSIG`) or within a second from its parent's PID changing (everywhere), and stops
  the same way within `ORPHAN_GRACE` seconds, or ends itself.

The worker is an ordinary `myriad worker` (`--parent-pid` ties it to serve): it joins the embedded
Redis-protocol server serve owns (announced beside the database) and starts the local Ray cluster
itself, so the web process needs no Ray at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType

from backend.settings import Settings

__all__ = ["ORPHAN_GRACE", "WorkerProcess", "stop_with_parent"]

log = logging.getLogger(__name__)

STOP_GRACE = 30.0  # seconds the worker gets to hand its run back when serve stops
ORPHAN_GRACE = 15.0  # seconds an orphaned worker gets to stop cleanly before it ends itself
RESTART_DELAYS = (1.0, 5.0, 30.0, 120.0)  # before restarting a worker that ended by itself
_PR_SET_PDEATHSIG = 1


class WorkerProcess:
    """A `myriad worker` child of this process while inside the context, restarted if it ends by
    itself, stopped on exit.

    Args:
        settings: the service's settings; the worker gets the same database and live layer.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False

    def __repr__(self) -> str:
        pid = self.process.pid if self.process is not None else None
        return f"WorkerProcess(pid={pid})"

    async def __aenter__(self) -> WorkerProcess:
        await self._start()
        self._watch = asyncio.create_task(self._restart_when_ended())
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self._stop()

    def _command(self) -> list[str]:
        return [sys.executable, "-m", "backend.cli", "worker", "--parent-pid", str(os.getpid())]

    def _environment(self) -> dict[str, str]:
        """This process's environment, with the settings the worker must share spelled out."""
        env = dict(os.environ) | {"DATABASE_URL": self.settings.database_url}
        if self.settings.redis_url is not None:
            env["REDIS_URL"] = self.settings.redis_url
        return env

    async def _start(self) -> None:
        # Its output goes where serve's does: the person at the terminal sees it start.
        # A session of its own: a Ctrl-C at the terminal reaches serve, which stops the worker itself.
        self.process = await asyncio.create_subprocess_exec(
            *self._command(), env=self._environment(), start_new_session=True
        )
        log.info("started the worker process %s", self.process.pid)

    async def _restart_when_ended(self) -> None:
        attempt = 0
        while not self._stopping and self.process is not None:
            started = time.monotonic()
            code = await self.process.wait()
            if time.monotonic() - started > RESTART_DELAYS[-1]:
                attempt = 0  # it ran a good while: a crash now is not a crash loop
            delay = RESTART_DELAYS[min(attempt, len(RESTART_DELAYS) - 1)]
            log.error(
                "the worker process %s ended by itself (exit code %s): no run is driven until it is "
                "restarted, in %.0f s",
                self.process.pid,
                code,
                delay,
            )
            await asyncio.sleep(delay)
            attempt += 1
            await self._start()

    async def _stop(self) -> None:
        process = self.process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE)
        except TimeoutError:
            log.error("the worker process %s did not stop in %.0f s: killing it", process.pid, STOP_GRACE)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


def stop_with_parent(parent: int, stop: Callable[[], None], loop: asyncio.AbstractEventLoop) -> None:
    """Call `stop` (in `loop`) when process `parent` ends, however it ends; if this process is
    still running `ORPHAN_GRACE` seconds later, end it (a worker must not outlive its serve).

    On Linux the kernel sends SIGTERM the moment the parent dies (`PR_SET_PDEATHSIG`): the
    worker's own SIGTERM handler then stops it. A thread also checks the parent's PID every
    second, for other systems and for a parent gone before this was set up.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning("prctl(PR_SET_PDEATHSIG) failed: errno %s", ctypes.get_errno())

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(1.0)
        log.warning("the process that started this worker (%s) ended: stopping", parent)
        loop.call_soon_threadsafe(stop)
        threading.Event().wait(ORPHAN_GRACE)
        log.error("stopping took over %.0f s: ending this worker now", ORPHAN_GRACE)
        os._exit(1)

    threading.Thread(target=watch, name="stop-with-parent", daemon=True).start()
