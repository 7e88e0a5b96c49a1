"""The fault suite's harness: real services that a test can break.

- `redis_server`: a `redis-server` of the test's own on a free loopback port (no persistence), which
  the test can SIGKILL and start again on the same port; every fault test's live layer.
- `postgres_url`: a private database on the real PostgreSQL server for this session (created,
  migrated, dropped at the end), so no other session's schema reset can touch it and no other
  session's connection is ever terminated. `PostgresFaults` finds the backends of given processes
  (by the client ports of their TCP connections, read with psutil, matched with
  `pg_stat_activity.client_port`) and terminates them with `pg_terminate_backend`.
- `workers`: `myriad worker` subprocesses on the test's database and Redis (on the session's Ray
  cluster, or with a private one-node Ray of their own), stopped tree and all, even after a failure.
- Helpers comparing a run with an undisturbed run of the same spec: round statistics, every action
  row, no duplicates, and the run's stored events.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psutil
import pytest
import redis
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from agents.spec import RunSpec
from backend import services
from backend.domain import RunStatus
from backend.runtime import Runtime
from backend.settings import Settings
from backend.store import actions
from backend.store.db import migrate
from backend.store.models import EventRow, Run
from backend.workflow.worker import Worker
from tests.conftest import POSTGRES_URL, missing, spec_data
from tests.waiting import wait_for, wait_for_async

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
FINAL = ("completed", "stopped", "failed")

# Runs of a few thousand agents: stateful rule-based agents (a resume must restore them) and probes
# that wait 0.3 s, so a round lasts long enough for a fault to land in the middle of the run.
KINDS = [
    {"kind": "adaptive", "share": 40},
    {"kind": "level_k", "share": 30, "params": {"k": 1}},
    {"kind": "probe", "share": 30, "params": {"delay": 0.3}},
]


def fault_spec(**changes: Any) -> RunSpec:
    """The fault suite's run: 3,000 agents on two hosts, 12 rounds, a checkpoint every round."""
    base = {
        "name": "fault",
        "rounds": 12,
        "placement": {"hosts": 2},
        "population.total": 3000,
        "population.kinds": KINDS,
    }
    return RunSpec.parse(spec_data(**(base | changes)))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- Redis -----------------------------------------------------------------------------------------


class RedisServer:
    """A `redis-server` on a loopback port of its own, without persistence: killed, it comes back
    empty, as a restarted cache would."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"RedisServer({self.url!r}, alive={self.alive})"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 15) -> None:
        """Start the server on its port and wait until it answers."""
        assert not self.alive, "redis-server is already running"
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                "--logfile",
                str(self.folder / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1) as client:

            def answers() -> bool:
                assert self.process.poll() is None, f"redis-server exited: {self._log()}"
                with contextlib.suppress(redis.RedisError):
                    return bool(client.ping())
                return False

            wait_for(answers, lambda: f"redis-server to answer: {self._log()}", timeout, every=0.02)

    def kill(self) -> None:
        """SIGKILL the server: every connection to it breaks at once."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        self.process = None

    def _log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    if not os.access(REDIS_SERVER, os.X_OK):
        missing("redis-server", FileNotFoundError(f"{REDIS_SERVER} (`make test` installs it)"))
    folder = tmp_path / "redis"
    folder.mkdir()
    server = RedisServer(folder)
    server.start()
    try:
        yield server
    finally:
        server.kill()


# -- Postgres --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this session's own on the real server, migrated to head, dropped at the end."""
    base = make_url(POSTGRES_URL)
    name = f"myriad_faults_{os.getpid()}"
    url = base.set(database=name).render_as_string(hide_password=False)

    async def admin(statement: str) -> None:
        engine = create_async_engine(base, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        finally:
            await engine.dispose()

    try:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, SQLAlchemyError) as e:
        missing("PostgreSQL", e)
    try:
        migrate(url)
        yield url
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(request, tmp_path) -> str:
    """SQLite in the test's folder unless the test asks for "postgres" (indirect parametrize)."""
    if getattr(request, "param", "sqlite") == "postgres":
        return request.getfixturevalue("postgres_url")
    url = f"sqlite+aiosqlite:///{tmp_path / 'myriad.db'}"
    migrate(url)
    return url


@pytest.fixture
def settings(database_url, redis_server) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_server.url,
        lease_seconds=3,
        poll_seconds=0.2,
        worker_id="test-worker",
    )


@pytest.fixture
async def runtime(settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings) as rt:
        yield rt


def pg_client_ports(pid: int) -> set[int]:
    """The local ports of the process's TCP connections to the PostgreSQL server."""
    server_port = make_url(POSTGRES_URL).port or 5432
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.NoSuchProcess:
        return set()
    return {c.laddr.port for c in connections if c.raddr and c.raddr.port == server_port}


class PostgresFaults:
    """Terminates the backends of given processes on the test's database (never another
    session's, never this one's own admin connection)."""

    def __init__(self, url: str) -> None:
        self.url = make_url(url)
        self.conn: asyncpg.Connection | None = None
        self.terminated: list[dict[str, Any]] = []

    async def __aenter__(self) -> PostgresFaults:
        u = self.url
        self.conn = await asyncpg.connect(
            host=u.host, port=u.port or 5432, user=u.username, password=u.password, database=u.database
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.conn.close()

    async def backends(self, pid: int, state: str | None = None) -> list[dict[str, Any]]:
        """The backends serving process `pid` now (optionally only those in `state`)."""
        assert self.conn is not None
        rows = await self.conn.fetch(
            "SELECT pid, client_port, state, query FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            " AND ($1::text IS NULL OR state = $1)",
            state,
        )
        if not rows:
            return []
        ports = pg_client_ports(pid)
        return [dict(r) for r in rows if r["client_port"] in ports]

    async def terminate(self, backend: dict[str, Any]) -> bool:
        assert self.conn is not None
        done = bool(await self.conn.fetchval("SELECT pg_terminate_backend($1)", backend["pid"]))
        if done:
            self.terminated.append(backend)
        return done


@pytest.fixture
async def pg_faults(database_url) -> AsyncIterator[PostgresFaults]:
    async with PostgresFaults(database_url) as faults:
        yield faults


class DatabaseLink:
    """A TCP link between workers and the database that a test can cut, as a network partition
    would (every connection reset, new ones refused), and mend: a forwarder on a loopback port
    of its own, run by an event loop in a thread."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.target = (url.host or "127.0.0.1", url.port or 5432)
        self.port = free_port()
        self.url = url.set(host="127.0.0.1", port=self.port).render_as_string(hide_password=False)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    def __repr__(self) -> str:
        return f"DatabaseLink(port={self.port}, up={self._server is not None})"

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def mend(self) -> None:
        if not self._thread.is_alive():
            self._thread.start()
        self._call(self._listen())

    def cut(self) -> None:
        self._call(self._cut())

    def close(self) -> None:
        self.cut()
        self._call(self._settle())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _settle(self) -> None:
        """Let the forwarding tasks see their connections reset and end."""
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=5)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in self._open:
            writer.transport.abort()  # a reset, not a goodbye: as a lost link looks
        self._open.clear()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._open |= {writer, upstream}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await source.read(1 << 16):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, upstream), pipe(upstream_reader, writer))
        self._open -= {writer, upstream}


@pytest.fixture
def database_link(database_url) -> Iterator[DatabaseLink]:
    link = DatabaseLink(database_url)
    link.mend()
    try:
        yield link
    finally:
        link.close()


# -- `myriad worker` subprocesses -----------------------------------------------------------------


class WorkerProcess:
    """A `myriad worker` in a process group of its own. Every process it starts carries its tag in
    the environment, so `stop` finds them all (a private Ray cluster's too), even orphaned."""

    def __init__(self, name: str, env: dict[str, str], folder: Path, temp_dir: str | None = None) -> None:
        self.name = name
        self.tag = f"{name}-{uuid.uuid4().hex}"
        self.log_path = folder / f"worker-{name}.log"
        self.temp_dir = temp_dir
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "worker"],
            env=env | {"MYRIAD_WORKER_ID": name, "MYRIAD_FAULTS_TAG": self.tag},
            cwd=folder,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.pid = self.process.pid

    def __repr__(self) -> str:
        return f"WorkerProcess({self.name!r}, pid={self.pid}, alive={self.alive})"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the worker process itself."""
        if self.alive:
            self.process.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL the worker's process group, as a crash or an OOM kill of the container would."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    async def wait(self, timeout: float) -> int:
        return await asyncio.to_thread(self.process.wait, timeout)

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def describe(self, lines: int = 6) -> str:
        state = "alive" if self.alive else f"exited with {self.process.returncode}"
        tail = "\n  ".join(line[:300] for line in self.log().splitlines()[-lines:])
        return f"worker {self.name} ({state}); its log ends:\n  {tail}"

    def tagged(self) -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if p.pid != os.getpid() and p.environ().get("MYRIAD_FAULTS_TAG") == self.tag:
                    found.append(p)
        return found

    def stop(self) -> None:
        """End the worker (SIGTERM, then SIGKILL after 30 s) and every process it left behind."""
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # anything left in its group
        for p in self.tagged():
            with contextlib.suppress(psutil.Error):
                p.kill()
        self._log.close()
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)


StartWorker = Callable[..., WorkerProcess]


@pytest.fixture
def workers(settings, ray_cluster, tmp_path) -> Iterator[StartWorker]:
    """Start `myriad worker` subprocesses: `workers("name", **env)`; lease 3 s, poll 0.2 s.
    With `own_ray=True` the worker starts its own one-node local Ray (no RAY_ADDRESS), as the
    embedded default and a plain `myriad worker` do."""
    started: list[WorkerProcess] = []

    def start(name: str, *, own_ray: bool = False, **extra: str) -> WorkerProcess:
        env = os.environ | {
            "DATABASE_URL": settings.database_url,
            "REDIS_URL": settings.redis_url,
            "RAY_ADDRESS": ray_cluster.address,
            "MYRIAD_LEASE_SECONDS": "3",
            "MYRIAD_POLL_SECONDS": "0.2",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled",
        }
        temp_dir = None
        if own_ray:
            env.pop("RAY_ADDRESS")
            env.pop("RAY_TMPDIR", None)
            # A short folder of its own: Ray's socket paths must stay under 108 bytes.
            temp_dir = tempfile.mkdtemp(prefix="mf-", dir="/tmp")
            env["TMPDIR"] = temp_dir
        worker = WorkerProcess(name, env | extra, tmp_path, temp_dir)
        started.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in started:
            worker.stop()


# -- waiting and reading ---------------------------------------------------------------------------


async def run_row(rt: Runtime, run_id: int) -> Run:
    return await services.get_run(rt, run_id)


async def wait_for_round(rt: Runtime, run_id: int, round: int, timeout: float = 60) -> Run:
    """Wait until the run has stored `round`; fail at once if it ends before."""

    async def reached() -> Run | None:
        run = await run_row(rt, run_id)
        assert run.status not in FINAL, f"run {run_id} ended ({run.status}: {run.error}) before round {round}"
        return run if run.round >= round else None

    return await wait_for_async(reached, f"run {run_id} at round {round}", timeout, every=0.05)


async def wait_for_end(
    rt: Runtime, run_id: int, timeout: float, explain: Callable[[], Awaitable[str]] | None = None
) -> Run:
    """Wait until the run is completed, stopped or failed."""

    async def ended() -> Run | None:
        run = await run_row(rt, run_id)
        return run if run.status in FINAL else None

    async def where() -> str:
        run = await run_row(rt, run_id)
        extra = await explain() if explain is not None else ""
        return f"{run!r}, lease {run.lease_owner}, error {run.error}. {extra}"

    try:
        return await wait_for_async(ended, f"run {run_id} to end", timeout, every=0.2)
    except AssertionError as timed_out:
        raise AssertionError(f"{timed_out}: {await where()}") from None


async def progress_after(rt: Runtime, run_id: int, since: float, timeout: float = 90) -> float:
    """Seconds from `since` (a monotonic time) until the run stores a round past the one it
    stands at now (or ends): how long it took to get going again."""
    at = (await run_row(rt, run_id)).round

    async def moved() -> bool:
        run = await run_row(rt, run_id)
        return run.round > at or run.status in FINAL

    await wait_for_async(moved, f"run {run_id} past round {at}", timeout, every=0.05)
    return time.monotonic() - since


async def reference_run(rt: Runtime, spec: RunSpec) -> int:
    """An undisturbed run of `spec`, driven to the end by an in-process worker in the same
    database (start no worker process before it: it would race for the run)."""
    run = await services.submit(rt, spec)
    worker = Worker(rt)
    claimed = await worker.claim(run.id)
    assert claimed is not None
    assert await asyncio.wait_for(worker.drive(claimed), 90) == RunStatus.COMPLETED
    return run.id


async def stored_rounds(rt: Runtime, run_id: int) -> list[tuple[int, dict, dict, int]]:
    rows = await services.rounds(rt, run_id)
    return [(r.round, r.stats, r.details, r.failures) for r in rows]


async def action_rows(rt: Runtime, run_id: int) -> list[tuple]:
    """(round, agent_id, value, payload, error) of each of the run's stored actions, in order."""
    async with rt.sessions() as session:
        return [
            (r["round"], r["agent_id"], r["value"], r["payload"], r["error"])
            async for chunk, errors in actions.chunks(session, run_id=run_id)
            for r in actions.rows_of(chunk, errors)
        ]


async def count_distinct_actions(rt: Runtime, run_id: int) -> tuple[int, int]:
    """(actions, distinct (round, agent_id)) of the run's stored actions."""
    async with rt.sessions() as session:
        total = await actions.count_actions(session, run_id=run_id)
        stored = actions.chunks(session, run_id=run_id)
        distinct = {(c.round, a) async for c, _ in stored for a in c.ids.tolist()}
    return total, len(distinct)


async def assert_identical(rt: Runtime, run_id: int, reference_id: int, spec: RunSpec) -> None:
    """The run's rounds and every action row equal the reference run's; no action twice."""
    rounds = await stored_rounds(rt, run_id)
    assert [r[0] for r in rounds] == list(range(1, spec.rounds + 1))
    assert rounds == await stored_rounds(rt, reference_id)
    total, distinct = await count_distinct_actions(rt, run_id)
    assert total == distinct == spec.rounds * spec.population.total
    assert await action_rows(rt, run_id) == await action_rows(rt, reference_id)


async def stored_events(rt: Runtime, run_id: int) -> list[EventRow]:
    async with rt.sessions() as session:
        found = await session.scalars(select(EventRow).where(EventRow.run_id == run_id).order_by(EventRow.id))
        return list(found.all())


async def assert_events_complete(rt: Runtime, run_id: int, final: str = "completed") -> list[EventRow]:
    """The run's stored history: queued, started, one `round` event per stored round (with its
    statistics) in order, and the final status last. Returns the events."""
    events = await stored_events(rt, run_id)
    kinds = [e.kind for e in events]
    assert kinds, "no event of the run is stored"
    assert kinds[0] == "queued", kinds
    assert "started" in kinds, kinds
    rounds = await services.rounds(rt, run_id)
    per_round = [e for e in events if e.kind == "round"]
    assert [e.round for e in per_round] == [r.round for r in rounds], kinds
    assert [e.payload.get("stats") for e in per_round] == [r.stats for r in rounds]
    assert kinds[-1] == final, kinds
    return events


async def lease_of(rt: Runtime, run_id: int) -> tuple[str, str | None, int, int]:
    """(status, lease owner, round, attempts) of the run as stored."""
    run = await run_row(rt, run_id)
    return run.status, run.lease_owner, run.round, run.attempts
