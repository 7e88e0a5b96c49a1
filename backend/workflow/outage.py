"""Riding out an outage of the live layer or the database: retry a call with backoff for a
bounded time, then give up with `Unavailable`.

Only faults that pass are retried (a dropped connection, a server restarting, a locked SQLite
file); a wrong query or a lost lease is raised at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import redis.exceptions
from sqlalchemy import exc as sa_exc

__all__ = ["LIVE", "STORE", "Service", "Unavailable", "patiently", "transient"]

log = logging.getLogger(__name__)

T = TypeVar("T")
Service = Literal["live layer", "database"]
LIVE: Service = "live layer"
STORE: Service = "database"

_FIRST_WAIT, _LONGEST_WAIT = 0.1, 2.0
# SQLSTATE classes of faults that pass: connection exception, insufficient resources, operator
# intervention (a terminated backend, a server shutting down or starting).
_PASSING_SQLSTATES = ("08", "53", "57")


class Unavailable(RuntimeError):
    """A service stayed unreachable for longer than the run may wait."""

    def __init__(self, service: Service, seconds: float, error: BaseException) -> None:
        super().__init__(
            f"the {service} was unreachable for {seconds:.0f} s ({type(error).__name__}: {error})"
        )
        self.service = service
        self.seconds = seconds


def transient(error: BaseException) -> Service | None:
    """Which service a fault that passes belongs to, or None if retrying cannot help."""
    if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return LIVE  # BusyLoadingError (a restarting server) is a ConnectionError
    if isinstance(error, sa_exc.DBAPIError):
        sqlstate = str(getattr(error.orig, "sqlstate", "") or "")
        locked = "database is locked" in str(error.orig)  # SQLite: another writer held on too long
        passing = error.connection_invalidated or isinstance(error, sa_exc.InterfaceError)
        return STORE if passing or locked or sqlstate.startswith(_PASSING_SQLSTATES) else None
    if isinstance(error, sa_exc.TimeoutError | ConnectionError | TimeoutError):
        return STORE  # the pool's wait for a connection, a refused or reset connection to the server
    if isinstance(error, OSError) and type(error).__module__.startswith("asyncpg"):
        return STORE
    return None


@dataclass
class Outage:
    """A fault that was ridden out: which service, and for how long."""

    service: Service
    seconds: float


async def patiently(
    call: Callable[[], Awaitable[T]],
    bounds: dict[Service, float],
    on_recovery: Callable[[Outage], Awaitable[None] | None] | None = None,
) -> T:
    """`await call()`, again after a fault that passes until its service's bound (in `bounds`)
    is spent; then raise `Unavailable`. `on_recovery` hears of every outage that was ridden out."""
    started: float | None = None
    service: Service | None = None
    wait = _FIRST_WAIT
    while True:
        try:
            result = await call()
        except Exception as error:
            service = transient(error)
            if service is None:
                raise
            now = time.monotonic()
            if started is None:
                started = now
                log.warning(
                    "the %s is unreachable (%s: %s); waiting for it", service, type(error).__name__, error
                )
            if now - started >= bounds[service]:
                raise Unavailable(service, now - started, error) from error
            await asyncio.sleep(wait * random.uniform(0.5, 1.0))  # jitter: workers don't retry in step
            wait = min(wait * 2, _LONGEST_WAIT)
            continue
        if started is not None and service is not None:
            outage = Outage(service, time.monotonic() - started)
            log.warning("the %s is back after %.1f s", outage.service, outage.seconds)
            if on_recovery is not None and (pending := on_recovery(outage)) is not None:
                await pending
        return result
