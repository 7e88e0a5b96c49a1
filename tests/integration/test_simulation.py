import asyncio

import pytest
import ray

from agents.core import Intervention
from agents.host import RemoteAgentHost
from agents.placement import alive_nodes
from agents.scenarios import RoundResult
from agents.simulation import Simulation
from agents.spec import RunSpec
from tests.helpers import Answers, Chatty, Hangs, Raises, ReadsNews, build

pytestmark = pytest.mark.usefixtures("ray_cluster")


def run(spec: RunSpec) -> tuple[list[RoundResult], list]:
    async def go():
        async with Simulation(spec) as sim:
            results = [r async for r in sim.rounds()]
            return results, await sim.host_stats()

    return asyncio.run(go())


def without_time(results: list[RoundResult]) -> list[tuple]:
    return [(r.round, r.stats, r.details, r.failures) for r in results]


def test_ten_thousand_agents_over_several_hosts(make_spec):
    spec = make_spec(**{"population.total": 10_000, "rounds": 4, "placement": {"hosts": 4}})
    results, hosts = run(spec)
    assert [r.round for r in results] == [1, 2, 3, 4]
    assert all(r.stats["cnt"] == 10_000 and r.failures == 0 for r in results)
    assert sum(results[0].details["histogram"]) == 10_000
    # level-1 agents answer 33, level-2 22: the crowd sits below the midpoint and keeps falling
    assert results[0].stats["avg"] < 50
    assert results[-1].stats["win"] < results[0].stats["win"]
    assert sorted(h.agents for h in hosts) == [2500] * 4
    assert all(h.steps == 4 * 2500 for h in hosts)


def test_one_host_or_three_give_identical_rounds(make_spec):
    one, _ = run(make_spec(**{"population.total": 3000, "placement": {"hosts": 1}}))
    three, hosts = run(make_spec(**{"population.total": 3000, "placement": {"hosts": 3}}))
    assert without_time(one) == without_time(three)
    assert len(hosts) == 3


def test_hosts_land_on_every_node(ray_cluster, make_spec):
    spec = make_spec(**{"population.total": 600, "rounds": 1})
    _, hosts = run(spec)
    assert len(hosts) == 3  # one per CPU, and each node has one
    assert {h.node_id for h in hosts} == {n.node_id for n in alive_nodes()}
    assert len({h.node_id for h in hosts}) == len(ray_cluster.list_all_nodes())


def test_a_different_seed_gives_a_different_run(make_spec):
    a, _ = run(make_spec(**{"rounds": 1}))
    b, _ = run(make_spec(**{"rounds": 1, "seed": 12}))
    assert a[0].stats != b[0].stats


def test_the_efficiency_probe_overlaps_its_waits(make_spec):
    spec = make_spec(
        **{"population.kinds": [{"kind": "probe", "share": 100, "params": {"delay": 0.2}}], "rounds": 2}
    )
    results, hosts = run(spec)
    assert all(r.stats["cnt"] == 1000 for r in results)
    # 1,000 agents that each wait 0.2 s: if they ran one after another, a round would take 200 s
    assert all(h.last_round_seconds < 20 for h in hosts)


def test_failing_and_hanging_agents_on_a_remote_host():
    host = RemoteAgentHost.remote(0, 0.5)
    ray.get(host.add.remote(build([Answers, Raises, Hangs, Answers])))
    batch = ray.get(host.step.remote(1, {"max_value": 100}, {}))
    assert batch.errors == {1: "ValueError: boom", 2: "TimeoutError: no action within 0.5 s"}
    assert all(0 <= batch.payloads[i] <= 100 for i in (0, 3))
    stats = ray.get(host.stats.remote())
    assert (stats.agents, stats.failures) == (4, 2)
    assert stats.node_id in {n.node_id for n in alive_nodes()}
    assert stats.rss_bytes > 0
    ray.kill(host)


def test_messages_are_routed_across_hosts(make_spec):
    async def go():
        spec = make_spec(**{"population.total": 3, "placement": {"hosts": 3}, "rounds": 2})
        async with Simulation(spec) as sim:
            # replace each host's agents with chatty ones that write to the next agent
            for i, host in enumerate(sim.hosts):
                await host.populate.remote(spec.population, spec.seed, range(i, i))
                await host.add.remote(build([Chatty], params=3, first=i))
            first = await sim.step()
            second = await sim.step()
            return first, second

    first, second = asyncio.run(go())
    assert first.stats["avg"] == 0  # nobody had mail yet
    assert second.stats["avg"] == 1  # each received one message, sent from another host


def test_public_injections_are_announced_for_one_round(make_spec):
    async def go():
        spec = make_spec(**{"population.total": 2, "placement": {"hosts": 1}, "rounds": 3})
        async with Simulation(spec) as sim:
            host = sim.hosts[0]
            await host.populate.remote(spec.population, spec.seed, range(0, 0))
            await host.add.remote(build([ReadsNews, ReadsNews]))
            sim.inject(Intervention("rates fall", public=True))
            sim.inject(Intervention("and rise", public=True))
            return [(await sim.step()).stats["avg"] for _ in range(2)]

    assert asyncio.run(go()) == [2, 0]


def test_a_round_says_how_many_agents_each_injection_reached(make_spec):
    """Counted where they are delivered, by the hosts: a message to those matching a filter, to
    everyone, and public information (everyone's, or a filter's as messages)."""
    sent = [
        Intervention("to the women", where={"gender": "female"}),
        Intervention("to everyone"),
        Intervention("news for all", public=True),
        Intervention("news for the men", where={"gender": "male"}, public=True),
        Intervention("to nobody", where={"gender": "female", "education": "none"}),
    ]

    async def go():
        spec = make_spec(**{"population.total": 1000, "placement": {"hosts": 2}, "rounds": 2})
        async with Simulation(spec) as sim:
            for intervention in sent:
                sim.inject(intervention)
            await sim.step()
            first = list(sim.delivered)
            await sim.step()
            return first, sim.delivered

    first, second = asyncio.run(go())
    assert first == list(zip(sent, [500, 1000, 1000, 500, 0], strict=True))
    assert second == []  # each is delivered once


def test_a_checkpoint_of_one_host_goes_on_over_three(make_spec):
    """The columns' state (adaptive answers) is split over hosts placed anew, through the same
    encoding a stored checkpoint uses: the rest of the run is the same as without the stop."""
    from backend.workflow import checkpoint

    def spec(hosts: int) -> RunSpec:
        return make_spec(**{"population.total": 3000, "rounds": 6, "placement": {"hosts": hosts}})

    async def go():
        async with Simulation(spec(1)) as sim:
            for _ in range(3):
                await sim.step()
            saved = checkpoint.encode(await sim.get_state())
            rest = [r async for r in sim.rounds()]
        async with Simulation(spec(3)) as again:
            await again.set_state(checkpoint.decode(saved))
            return rest, [r async for r in again.rounds()]

    rest, resumed = asyncio.run(go())
    assert [r.round for r in resumed] == [4, 5, 6]
    assert without_time(resumed) == without_time(rest)
