"""Shared fixtures: spec factories, and the real Postgres and Redis the service tests use."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import ray
import ray.cloudpickle
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ray.cluster_utils import Cluster
from sqlalchemy import text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import create_async_engine

from agents.llm_stub import StubServer
from agents.spec import RunSpec
from backend.app import Server, create_app
from backend.cli.serve import STREAMS_GRACE, server_config
from backend.domain import RunStatus
from backend.runtime import Runtime
from backend.settings import Settings
from backend.store.db import migrate
from backend.store.models import Run
from backend.workflow.worker import Worker
from tests import helpers
from tests.waiting import wait_for

BASE_SPEC: dict[str, Any] = {
    "name": "test",
    "scenario": {"name": "guess_two_thirds", "params": {"ratio": "2/3", "max_value": 100}},
    "rounds": 3,
    "seed": 11,
    "population": {
        "total": 1000,
        "attributes": {"gender": {"female": 50, "male": 50}, "education": {"school": 60, "university": 40}},
        "kinds": [
            {"kind": "level_k", "share": 20, "params": {"k": 0}},
            {"kind": "level_k", "share": 30, "params": {"k": 1}},
            {"kind": "level_k", "share": 20, "params": {"k": 2}},
            {"kind": "adaptive", "share": 20},
            {"kind": "uniform", "share": 10},
        ],
    },
}


# The social network's changes to the base spec: 2,000 rule-based agents, news from 10 seeds.
SOCIAL: dict[str, Any] = {
    "scenario": {
        "name": "social",
        "params": {"topic": "The bridge closes", "graph": "preferential", "following": 8, "seeds": 10},
    },
    "population.total": 2000,
    "population.kinds": [
        {"kind": "threshold", "share": 30, "params": {"theta": 0.1}},
        {"kind": "threshold", "share": 30, "params": {"theta": 0.3}},
        {"kind": "voter", "share": 40},
    ],
    "rounds": 5,
}


def spec_data(**changes: Any) -> dict[str, Any]:
    """The base spec as data, with `changes` applied; keys use dots for nesting
    (`spec_data(**{"population.total": 5})`)."""
    data = copy.deepcopy(BASE_SPEC)
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target = data
        for key in parents:
            target = target.setdefault(key, {}) if isinstance(target, dict) else target[int(key)]
        if isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return data


@pytest.fixture
def make_spec():
    def make(**changes: Any) -> RunSpec:
        return RunSpec.parse(spec_data(**changes))

    return make


# -- services: a real Postgres and Redis (CI has both; elsewhere they may be missing) -------------

POSTGRES_URL = os.environ.get("MYRIAD_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("MYRIAD_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def missing(service: str, error: Exception) -> None:
    """In CI a missing service fails the test; on a developer's machine it skips, saying why."""
    message = f"{service} is not reachable: {error}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """The test database, emptied and migrated to head once per session."""

    async def reset() -> None:
        engine = create_async_engine(POSTGRES_URL)
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
        await engine.dispose()

    try:
        asyncio.run(reset())
    except (OSError, SQLAlchemyError) as e:
        missing("PostgreSQL", e)
    migrate(POSTGRES_URL)
    return POSTGRES_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.RedisError as e:
        missing("Redis", e)
    finally:
        client.close()
    return REDIS_URL


def module_database(request: Any, tmp_path_factory: Any, name: str) -> str:
    """A module fixture's database, by its parameter: the shared Postgres, or a SQLite file of its
    own (`name`, a folder) that the service migrates when it starts."""
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    return f"sqlite:///{tmp_path_factory.mktemp(name) / 'api.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("postgres_url")
    url = f"sqlite+aiosqlite:///{tmp_path / 'myriad.db'}"
    migrate(url)
    return url


@pytest.fixture
def settings(database_url, redis_url) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        lease_seconds=3,
        poll_seconds=0.2,
        worker_id="test-worker",
    )


@pytest.fixture
async def runtime(settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings) as rt:
        await rt.live.redis.flushdb()  # run ids restart with each SQLite database
        yield rt
        # What the test left unfinished is stopped: the Postgres is shared by the whole session,
        # and a run left queued, or leased to a made-up worker, would go to a later test's worker.
        async with rt.sessions() as session:
            unfinished = Run.status.in_((RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED))
            stopped = {"status": RunStatus.STOPPED, "lease_owner": None, "lease_expires": None}
            await session.execute(update(Run).where(unfinished).values(**stopped))
            await session.commit()


# -- one Ray cluster of three nodes on this machine, shared by every test of the session ---------

NODES = 3
LLM_KEY_ENV, LLM_KEY = "TEST_LLM_KEY", "sk-test-never-stored"
# The operator's allow-list of model keys: the tests' own (STUB_KEY: the new-run form's tests).
os.environ["MYRIAD_LLM_KEYS"] = f"{LLM_KEY_ENV},STUB_KEY"


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Cluster]:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ["RAY_AUTH_MODE"] = "disabled"
    # Everything Ray writes, its "current cluster" file included, stays in a folder of our own.
    temp_dir = tempfile.mkdtemp(prefix="myriad-test-")
    os.environ["RAY_TMPDIR"] = temp_dir
    # Every node's processes have the language-model key, as a deployment's nodes would.
    os.environ[LLM_KEY_ENV] = LLM_KEY
    os.makedirs(os.path.join(temp_dir, "ray"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    for _ in range(NODES - 1):
        cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, logging_level="WARNING")
    # Test-only agent kinds travel to the workers by value: the workers cannot import tests/.
    ray.cloudpickle.register_pickle_by_value(helpers)
    yield cluster
    ray.shutdown()
    cluster.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)


# -- the app: settings for a service on a fresh SQLite file and the real Redis, and a client ------

TOKEN = "test-token-of-24-chars--"
API = {"Authorization": f"Bearer {TOKEN}"}  # what an API client sends


def driving_settings(database_url: str, redis_url: str) -> Settings:
    """The service with a worker beside it that looks for new runs every 0.2 s (see
    `driving_app`)."""
    return Settings(
        database_url=database_url,
        redis_url=redis_url,
        token=TOKEN,
        serve_worker=False,
        poll_seconds=0.2,
    )


def driving_app(settings: Settings) -> FastAPI:
    """The app with a worker driving runs beside it, as `myriad serve` has on the embedded default
    (also on Postgres here), but in the app's event loop and on the test session's Ray cluster
    rather than in a process of its own: the app itself never drives runs. The worker hands its
    run back at a round boundary when the app stops."""
    app = create_app(settings)
    serving = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[Any]:
        async with serving(app) as state:
            stop = asyncio.Event()
            worker = asyncio.create_task(Worker(app.state.runtime).serve(stop))
            try:
                yield state
            finally:
                stop.set()
                await worker

    app.router.lifespan_context = lifespan
    return app


@pytest.fixture
def api_settings(tmp_path, redis_url) -> Settings:
    with redis.Redis.from_url(redis_url) as live:
        live.flushdb()  # run ids restart with each SQLite database: no run's hosts from a test before
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        redis_url=redis_url,
        token=TOKEN,
        serve_worker=False,
    )


@pytest.fixture
def client(api_settings):
    with TestClient(create_app(api_settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        client.app.state.runtime  # noqa: B018 - the lifespan has run
        yield client


def sign_in(visitor: TestClient) -> None:
    response = visitor.post("/login", data={"token": TOKEN, "next": "/"})
    assert response.status_code == 303


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


@pytest.fixture
def visitor(api_settings):
    """A client with no token: it signs in like a person would."""
    with TestClient(create_app(api_settings), follow_redirects=False) as client:
        yield client


@pytest.fixture
def member(visitor):
    """A signed-in visitor."""
    sign_in(visitor)
    return visitor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_app(settings: Settings, grace: int = STREAMS_GRACE, *, drive: bool = False) -> Iterator[str]:
    """The app under uvicorn on a free loopback port, in a thread; yields its base URL. Requests
    still going when it stops get `grace` seconds; with `drive`, a worker drives runs beside it
    (`driving_app`)."""
    port = _free_port()
    app = driving_app(settings) if drive else create_app(settings)
    server = Server(server_config(app, settings, "127.0.0.1", port, grace=grace))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()

    def started() -> bool:
        assert thread.is_alive(), "the server stopped while starting"
        return server.started

    wait_for(started, "the server to start", every=0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=60)


RECOVERIES = Path(__file__).resolve().parents[1] / "test-artifacts" / "faults.tsv"


@pytest.fixture(scope="session")
def recoveries() -> Iterator[list[tuple[str, str, float]]]:
    """(fault, outcome, seconds to recover) of each fault test, written to
    test-artifacts/faults.tsv at the end: the figures of the fault table."""
    rows: list[tuple[str, str, float]] = []
    yield rows
    if rows:
        RECOVERIES.parent.mkdir(exist_ok=True)
        lines = [f"{fault}\t{outcome}\t{seconds:.1f}\n" for fault, outcome, seconds in rows]
        RECOVERIES.write_text("fault\toutcome\tseconds to recover\n" + "".join(lines), encoding="utf-8")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Browser tests (those with a `page`) run last: Playwright's sync API leaves an event loop
    running in the main thread for the rest of the session, where `asyncio.run` would refuse to
    start."""
    items.sort(key=lambda item: "page" in getattr(item, "fixturenames", ()))


# -- browsers: Debian's Chromium driven by Playwright (it cannot download browsers here) ---------

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture(scope="module")
def site(tmp_path_factory, redis_url, ray_cluster):
    """The service with a worker beside it (`driving_app`) on a loopback port.

    Its live layer is a Redis database of its own, emptied first: the other tests' runs, in
    databases of their own, have the same ids, and what they left in the live layer would show as
    this service's (run 2's hosts, published by a test a moment before, on its cluster page)."""
    parts = urlsplit(redis_url)
    own = urlunsplit(parts._replace(path=f"/{(int(parts.path.strip('/') or 0) - 1) % 16}"))
    with redis.Redis.from_url(own) as client:
        client.flushdb()
    settings = driving_settings(f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'site.db'}", own)
    with serve_app(settings, drive=True) as url:
        yield url


@pytest.fixture
def shoot(page):
    """Save a screenshot of the page as a test artifact; returns its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def save(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return save


def sign_in_page(page: Any, site: str) -> None:
    """Sign a browser page in with the printed link; it lands on the runs page."""
    page.goto(f"{site}/login?token={TOKEN}")
    page.get_by_role("heading", name="Runs").wait_for()


def stub_model(url: str, **extra: Any) -> dict[str, Any]:
    """A spec's model served by the stand-in at `url`: quick timeouts and retries, the test key."""
    return {
        "endpoints": [{"url": url, "concurrency": 40}],
        "api_key_env": LLM_KEY_ENV,
        "timeout": 5,
        "retries": 6,
        "backoff": 0.02,
        **extra,
    }


@pytest.fixture
def llm_stub() -> Iterator[StubServer]:
    """The stand-in OpenAI-compatible server, in a thread of its own on a free loopback port;
    change its `config` to make it misbehave, read `served` for what it did."""
    loop = asyncio.new_event_loop()
    server = StubServer()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result(timeout=10)
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
