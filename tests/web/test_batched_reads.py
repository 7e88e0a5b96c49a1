"""The pages polled most read in batches: the runs list (API and page) reads the live layer in one
round trip however many runs it shows, and the cluster page reads the database once however many
runs have hosts on it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from tests.conftest import API, spec_data


def _submit(member: Any, count: int) -> list[int]:
    ids = []
    for _ in range(count):
        response = member.post("/api/v1/runs", json=spec_data(), headers=API)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


@contextmanager
def _redis_round_trips(member: Any) -> Iterator[Callable[[], int]]:
    """How many connections the app takes from its live layer's pool (one per command sent, or
    per pipeline) while inside."""
    pool = member.app.state.runtime.live.redis.connection_pool
    taken = 0
    get = pool.get_connection

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal taken
        taken += 1
        return await get(*args, **kwargs)

    pool.get_connection = counting
    try:
        yield lambda: taken
    finally:
        del pool.get_connection


@contextmanager
def _queries(member: Any) -> Iterator[Callable[[], int]]:
    """How many SQL statements the app sends to its database while inside."""
    engine = member.app.state.runtime.engine.sync_engine
    sent = 0

    def count(*_: Any) -> None:
        nonlocal sent
        sent += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield lambda: sent
    finally:
        event.remove(engine, "before_cursor_execute", count)


def test_the_runs_list_reads_the_live_layer_once_however_many_runs(member):
    _submit(member, 1)
    reads: dict[str, list[int]] = {"api": [], "page": []}
    for shown in (1, 30):
        if shown > 1:
            _submit(member, shown - 1)
        with _redis_round_trips(member) as taken:
            listed = member.get("/api/v1/runs", params={"limit": shown}, headers=API).json()
        assert len(listed["data"]) == shown
        assert all("live" in run for run in listed["data"])
        reads["api"].append(taken())
        with _redis_round_trips(member) as taken:
            assert member.get("/").status_code == 200
        reads["page"].append(taken())
    assert reads["api"][0] == reads["api"][1] <= 2, reads
    assert reads["page"][0] == reads["page"][1] <= 2, reads


HOST = {
    "node_id": "node-a",
    "hostname": "here",
    "pid": 1,
    "agents": 100,
    "steps": 100,
    "failures": 0,
    "rounds": 1,
    "last_round_seconds": 0.1,
    "rss_bytes": 1,
}
NODE = {"node_id": "node-a", "address": "127.0.0.1", "cpus": 2.0, "gpus": 0.0, "memory_bytes": 1 << 30}


def test_the_cluster_page_reads_the_database_once_however_many_runs(member):
    live = member.app.state.runtime.live
    portal = member.portal  # the app's event loop: its Redis client lives there

    def show_hosts(run_ids: list[int]) -> None:
        for run_id in run_ids:
            portal.call(live.set_hosts, run_id, [HOST | {"index": 0}, HOST | {"index": 1}])
        portal.call(live.set_nodes, [NODE])

    queries = []
    runs = _submit(member, 1)
    for count in (1, 20):
        runs += _submit(member, count - len(runs))
        show_hosts(runs)
        with _queries(member) as sent:
            page = member.get("/cluster")
        assert page.status_code == 200
        assert page.text.count('<span class="status queued">') >= 2 * count  # each host's run status
        queries.append(sent())
    assert queries[0] == queries[1], queries
