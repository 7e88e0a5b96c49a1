"""Waiting in tests: ask again until something is so, or fail naming what was awaited.

Every test that waits for a run, a process, a port or a log line waits through `wait_for` (or
`wait_for_async` inside a coroutine), so a timeout always reads "waited 120 s for run 3 to be
completed; last seen: ..." instead of a bare `assert time.monotonic() < deadline`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

__all__ = ["wait_for", "wait_for_async", "wait_for_run"]

T = TypeVar("T")

# `what` is a phrase ("run 3 to be completed"), or a function that says it when the wait fails,
# so it can tell the last state seen.
What = str | Callable[[], str]


def _timed_out(what: What, timeout: float) -> AssertionError:
    return AssertionError(f"waited {timeout:g} s for {what() if callable(what) else what}")


def wait_for(check: Callable[[], T | None], what: What, timeout: float = 60, every: float = 0.1) -> T:
    """Call `check` every `every` seconds until it returns something truthy, and return that.

    Raises:
        AssertionError: after `timeout` seconds, naming `what`. An exception `check` raises (an
            assertion that the awaited process is still alive, say) ends the wait at once.
    """
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout)
        time.sleep(every)
    return value


async def wait_for_async(
    check: Callable[[], Awaitable[T | None]], what: What, timeout: float = 60, every: float = 0.1
) -> T:
    """`wait_for` inside a coroutine: `check` is awaited, and the loop is free between checks."""
    deadline = time.monotonic() + timeout
    while not (value := await check()):
        if time.monotonic() > deadline:
            raise _timed_out(what, timeout)
        await asyncio.sleep(every)
    return value


def wait_for_run(
    client: Any,
    run_id: int,
    *statuses: str,
    done: Callable[[dict[str, Any]], bool] | None = None,
    what: str = "the state the test wants",
    headers: Mapping[str, str] | None = None,
    timeout: float = 120,
    every: float = 0.2,
) -> dict[str, Any]:
    """The run as `GET /api/v1/runs/{id}` answers (asked through `client`, an httpx or TestClient
    client, with `headers` when it does not carry the token) once its status is one of
    `statuses`, or once `done(run)` (`what` says what that is: "round 3")."""
    reached = done or (lambda run: run["status"] in statuses)
    last: dict[str, Any] = {}

    def ask() -> dict[str, Any] | None:
        nonlocal last
        last = client.get(f"/api/v1/runs/{run_id}", headers=headers).json()
        return last if reached(last) else None

    wanted = f"be {' or '.join(statuses)}" if done is None else f"reach {what}"
    return wait_for(ask, lambda: f"run {run_id} to {wanted}; last seen: {last}", timeout, every)
