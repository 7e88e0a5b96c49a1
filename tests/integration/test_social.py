import asyncio

import pytest

from agents.scenarios import RoundResult
from agents.simulation import Simulation
from agents.spec import RunSpec
from tests.conftest import SOCIAL

pytestmark = pytest.mark.usefixtures("ray_cluster")


def social_spec(make_spec, hosts: int) -> RunSpec:
    return make_spec(**SOCIAL, placement={"hosts": hosts})


def without_time(results: list[RoundResult]) -> list[tuple]:
    return [(r.round, r.stats, r.details, r.failures) for r in results]


async def play(spec: RunSpec, *, until: int | None = None, state: dict | None = None):
    """The run's rounds (those after `state`, when given), and its state after round `until`."""
    async with Simulation(spec) as sim:
        if state is not None:
            await sim.set_state(state)
        results, saved = [], None
        async for result in sim.rounds():
            results.append(result)
            if result.round == until:
                saved = await sim.get_state()
        return results, saved


def test_one_host_or_three_give_identical_rounds(make_spec):
    one, _ = asyncio.run(play(social_spec(make_spec, 1)))
    three, _ = asyncio.run(play(social_spec(make_spec, 3)))
    assert without_time(one) == without_time(three)

    stats = [r.stats for r in one]
    assert (stats[0]["posts"], stats[0]["adopted"]) == (10, 10)  # the seeds break the news
    assert all(r.failures == 0 and r.stats["invalid"] == 0 for r in one)
    seen = [s["seen"] for s in stats]
    assert seen == sorted(seen)
    assert seen[-1] > 1000  # feeds crossed hosts: most of the 2,000 agents saw it
    assert stats[-1]["reposts"] > 0
    assert all(s["posts"] + s["reposts"] + s["silent"] == 2000 for s in stats)
    events = [e["kind"] for r in one for e in r.details["events"]]
    assert "first_repost" in events
    assert "news_reached" in events


def test_a_run_resumed_on_other_hosts_continues_exactly(make_spec):
    straight, state = asyncio.run(play(social_spec(make_spec, 1), until=2))
    resumed, _ = asyncio.run(play(social_spec(make_spec, 3), state=state))
    assert [r.round for r in resumed] == [3, 4, 5]
    assert without_time(resumed) == without_time(straight[2:])
