"""Worker presence: what `myriad run` reads to hand its run to a live worker."""

import asyncio

import pytest

from backend import services
from backend.settings import Settings
from backend.workflow.presence import PRESENCE_TTL, database_key, present
from backend.workflow.worker import Worker
from tests.waiting import wait_for_async


async def _present(runtime, *, timeout: float = 30) -> list[dict]:
    return await wait_for_async(lambda: services.workers(runtime), "the worker to say it is there", timeout)


@pytest.mark.usefixtures("ray_cluster")
async def test_a_serving_worker_is_present_on_its_database_until_it_stops(runtime, tmp_path):
    stop = asyncio.Event()
    serving = asyncio.create_task(Worker(runtime).serve(stop))
    try:
        [found] = await _present(runtime)
        assert (found["id"], found["runs"], found["free"]) == (
            "test-worker",
            [],
            runtime.settings.worker_runs,
        )
        # A worker on another database is no worker for this one, even on the same live layer.
        elsewhere = runtime.settings.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'other.db'}"})
        assert await present(runtime.live, elsewhere) == []
        # Said again and again, so it never expires while the worker lives.
        await asyncio.sleep(PRESENCE_TTL + 1)
        assert [w["id"] for w in await services.workers(runtime)] == ["test-worker"]
    finally:
        stop.set()
        await serving
    assert await services.workers(runtime) == []  # gone at once, not when its key expires


async def test_a_worker_that_died_is_forgotten(runtime):
    """Its key expires: a worker killed outright is not waited for."""
    await runtime.live.set_worker("gone", {"id": "gone", "database": "x", "runs": []}, ttl=0.3)
    assert [w["id"] for w in await runtime.live.workers()] == ["gone"]
    await asyncio.sleep(0.5)
    assert await runtime.live.workers() == []


def test_presence_names_a_database_the_same_from_anywhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = Settings(database_url="sqlite:///myriad.db")
    assert database_key(relative) == database_key(
        Settings(database_url=f"sqlite:///{tmp_path / 'myriad.db'}")
    )
    assert database_key(relative) != database_key(Settings(database_url=f"sqlite:///{tmp_path / 'other.db'}"))
    # A server's database without its password, which a worker's settings may spell otherwise.
    with_password = Settings(database_url="postgresql://me:secret@db:5432/myriad")
    assert database_key(with_password) == database_key(
        Settings(database_url="postgresql://me@db:5432/myriad")
    )
