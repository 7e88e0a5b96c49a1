"""The service's connections, opened and closed together: database, live channel, Ray."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from backend.live.channel import LiveChannel
from backend.settings import Settings
from backend.store.db import create_engine, migrate, session_factory, sqlite_at_head

__all__ = ["Runtime"]

log = logging.getLogger(__name__)


class Runtime:
    """Everything a process of the service needs, from `Settings` alone.

    With no REDIS_URL it joins the embedded Redis-protocol server another live process owns for
    this database, or owns one (see `EmbeddedLive`); on SQLite it migrates the database first (the
    embedded default needs no setup); with `ray=True` it connects to Ray (or starts a local
    cluster). All of it is stopped on exit, in reverse order — and so is what had started when
    one of them fails to start (Ray not answering, say).

    Args:
        settings: the service settings.
        ray: connect to Ray too (a worker needs it; the web server does not).
        live: open the live layer (a reader of the database alone, like `myriad runs list`, does
            not: starting and stopping an embedded server for it would take seconds).
    """

    def __init__(self, settings: Settings, *, ray: bool = False, live: bool = True) -> None:
        self.settings = settings
        self._want_ray = ray
        self._want_live = live
        self._opened = AsyncExitStack()  # how to stop what has started, latest first
        self.engine: AsyncEngine
        self.sessions: async_sessionmaker[AsyncSession]
        self.live: LiveChannel

    def __repr__(self) -> str:
        return f"Runtime(database={self.settings.database_url!r}, ray={self._want_ray})"

    async def __aenter__(self) -> Runtime:
        async with AsyncExitStack() as opening:
            settings = self.settings
            if not settings.is_postgres and not sqlite_at_head(settings.database_url):
                await asyncio.to_thread(migrate, settings.database_url)
            redis_url = settings.redis_url
            if redis_url is None and self._want_live:
                from backend.live.embedded import EmbeddedLive  # here: valkey's client is slow to import

                embedded = EmbeddedLive(settings.live_announce)
                # Not in a thread: cancelled there, it could go on to start a server nobody stops.
                redis_url = embedded.open()
                opening.callback(embedded.close)
            self.engine = create_engine(settings.database_url)
            opening.push_async_callback(self.engine.dispose)
            self.sessions = session_factory(self.engine)
            if self._want_live:
                assert redis_url is not None
                self.live = LiveChannel(redis_url, events_kept=settings.events_kept)
                opening.push_async_callback(self.live.close)
            if self._want_ray:
                from agents.cluster import RayCluster  # here: processes without Ray never import it

                cluster = RayCluster(settings.ray_address)
                cluster.connect()  # in the main thread: Ray installs signal handlers there
                opening.callback(cluster.close)
            # Everything started: from now on it is stopped on exit, not here.
            self._opened = opening.pop_all()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self._opened.aclose()
