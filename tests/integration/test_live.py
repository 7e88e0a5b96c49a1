import asyncio

import pytest

from backend.live.channel import LiveChannel
from backend.live.embedded import EmbeddedRedis


@pytest.fixture(params=["redis", "embedded"])
async def live(request):
    if request.param == "redis":
        channel = LiveChannel(request.getfixturevalue("redis_url"), events_kept=100)
        await channel.redis.flushdb()  # what other tests' runs left in the shared test database
        yield channel
        await channel.redis.flushdb()
        await channel.close()
    else:
        with EmbeddedRedis() as server:
            channel = LiveChannel(server.url, events_kept=100)
            yield channel
            await channel.close()


async def test_state_is_merged_and_read_back(live):
    await live.set_state(1, status="running", round=3)
    await live.set_state(1, round=4, failed=2)
    state = await live.state(1)
    assert (state["status"], state["round"], state["failed"]) == ("running", 4, 2)
    assert state["updated"] > 0
    assert await live.state(2) == {}


async def test_events_come_in_order_after_a_cursor(live):
    first = await live.emit(7, "round", 1, {"avg": 33.0})
    await live.emit(7, "paused", 1)
    events = await live.events(7)
    assert [(e["kind"], e["round"]) for _, e in events] == [("round", 1), ("paused", 1)]
    assert events[0][1]["payload"] == {"avg": 33.0}
    assert [e["kind"] for _, e in await live.events(7, after=first)] == ["paused"]


async def test_event_streams_are_trimmed(live):
    for i in range(1000):
        await live.emit(8, "round", i)
    assert await live.redis.xlen("myriad:run:8:events") <= 300  # ~100 kept; trimming is approximate
    newest = await live.events(8, after="0-0", count=2000)
    assert newest[-1][1]["round"] == 999


async def test_hosts_expire(live):
    await live.set_hosts(4, [{"index": 0, "agents": 10}], ttl=0.05)
    assert await live.hosts(4) == [{"index": 0, "agents": 10}]
    await asyncio.sleep(0.1)
    assert await live.hosts(4) == []


def test_embedded_server_stops_on_exit():
    import redis

    with EmbeddedRedis() as server:
        url = server.url
        assert redis.Redis.from_url(url).ping()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
