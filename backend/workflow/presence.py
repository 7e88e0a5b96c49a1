"""Worker presence: each `myriad worker` (and so `myriad serve`'s) says every few seconds in the
live layer that it is alive, on which database, and which run it drives. `myriad run` reads it to
hand its run to a live worker instead of starting a Ray cluster of its own.

A key with a time to live, not a row: a worker that dies (SIGKILL, its machine gone) is forgotten
by itself within `PRESENCE_TTL` seconds, and a worker that stops says so at once.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path
from typing import Any

from backend.live.channel import LiveChannel
from backend.settings import Settings

__all__ = ["PRESENCE_EVERY", "PRESENCE_TTL", "announce", "database_key", "present", "withdraw"]

PRESENCE_EVERY = 2.0  # seconds between a worker's announcements
PRESENCE_TTL = 3 * PRESENCE_EVERY  # a worker silent this long is not there


def database_key(settings: Settings) -> str:
    """Which database `settings` name, the same from any working folder and any process (a
    SQLite file by its absolute path; other URLs without their password), as a short digest."""
    url = settings.database_url
    if url.startswith("sqlite") and ":///" in url:
        path = url.split(":///", 1)[1].split("?", 1)[0]
        if path and path != ":memory:":
            url = "sqlite:" + str(Path(path).resolve())
    else:
        scheme, _, rest = url.partition("://")
        url = f"{scheme}://{rest.rpartition('@')[2]}"
    return hashlib.sha256(url.encode()).hexdigest()[:16]


async def announce(
    live: LiveChannel, settings: Settings, *, runs: list[int], free: int, since: float
) -> None:
    """Say that this worker is alive, on this database, driving `runs`, with room for `free`
    more."""
    info: dict[str, Any] = {
        "id": settings.worker_id,
        "database": database_key(settings),
        "runs": runs,
        "free": free,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": since,
        "seen": time.time(),
    }
    await live.set_worker(settings.worker_id, info, ttl=PRESENCE_TTL)


async def withdraw(live: LiveChannel, settings: Settings) -> None:
    await live.forget_worker(settings.worker_id)


async def present(live: LiveChannel, settings: Settings) -> list[dict[str, Any]]:
    """The live workers on the database of `settings`, those with most room first."""
    here = database_key(settings)
    found = [w for w in await live.workers() if w.get("database") == here]
    return sorted(found, key=lambda w: (-w.get("free", 0), str(w.get("id"))))
