"""The service's connections, opened and closed together: database, live channel, Ray."""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from agents.cluster import RayCluster
from backend.live.channel import LiveChannel
from backend.live.embedded import EmbeddedRedis, running_at
from backend.settings import Settings
from backend.store.db import create_engine, migrate, session_factory

__all__ = ["Runtime"]

log = logging.getLogger(__name__)


class Runtime:
    """Everything a process of the service needs, from `Settings` alone.

    With no REDIS_URL it joins the embedded Redis-protocol server another process announced for
    this database, or starts one and announces it; on SQLite it migrates the
    database first (the embedded default needs no setup); with `ray=True` it connects to Ray (or
    starts a local cluster). All of it is stopped on exit, in reverse order.

    Args:
        settings: the service settings.
        ray: connect to Ray too (workers and in-process runs need it; the API alone does not).
    """

    def __init__(self, settings: Settings, *, ray: bool = False) -> None:
        self.settings = settings
        self._want_ray = ray
        self._embedded: EmbeddedRedis | None = None
        self._ray: RayCluster | None = None
        self.engine: AsyncEngine
        self.sessions: async_sessionmaker[AsyncSession]
        self.live: LiveChannel

    def __repr__(self) -> str:
        return f"Runtime(database={self.settings.database_url!r}, ray={self._want_ray})"

    async def __aenter__(self) -> Runtime:
        settings = self.settings
        if not settings.is_postgres:
            await asyncio.to_thread(migrate, settings.database_url)
        redis_url = settings.redis_url or running_at(settings.live_announce)
        if redis_url is None:
            self._embedded = EmbeddedRedis()
            redis_url = self._embedded.start(announce=settings.live_announce)
        self.engine = create_engine(settings.database_url)
        self.sessions = session_factory(self.engine)
        self.live = LiveChannel(redis_url, events_kept=settings.events_kept)
        if self._want_ray:
            self._ray = RayCluster(settings.ray_address)
            self._ray.connect()  # in the main thread: Ray installs signal handlers there
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._ray is not None:
            self._ray.close()
        await self.live.close()
        await self.engine.dispose()
        if self._embedded is not None:
            self._embedded.stop()
