"""Telling the live layer what the database has just recorded, without failing a request for it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from redis.exceptions import RedisError

from backend.runtime import Runtime

__all__ = ["announce", "tell"]

log = logging.getLogger(__name__)


async def tell(call: Awaitable[Any]) -> None:
    """Tell the live layer, if it answers: the database has already recorded what matters, and a
    user's request must not fail (and be sent twice) because Redis blinked."""
    try:
        await call
    except RedisError as e:
        log.warning("the live layer did not hear it: %s: %s", type(e).__name__, e)


async def announce(
    rt: Runtime, run_id: int, at: int, kind: str, payload: dict[str, Any], /, **state: Any
) -> None:
    """Show live what the database has just recorded: the run's new `state` and its event (of
    round `at`)."""
    await tell(rt.live.set_state(run_id, **state))
    await tell(rt.live.emit(run_id, kind, at, payload))
