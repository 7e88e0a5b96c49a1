"""A run's hosts close their language-model HTTP client before they are stopped, rather than
dying with it open (`ray.kill` ends a host's process at once)."""

from __future__ import annotations

import asyncio
import os

import psutil
import pytest

from agents.host import AgentHost
from agents.simulation import Simulation
from agents.spec import RunSpec
from tests.conftest import spec_data
from tests.waiting import wait_for_async


def llm_run(url: str, agents: int = 40) -> RunSpec:
    model = {"endpoints": [{"url": url, "concurrency": 8}], "timeout": 5, "retries": 2, "backoff": 0.02}
    kind = {"kind": "llm_guess", "share": 100, "params": {"model": "stub", "turn_timeout": 5}}
    changes = {
        "rounds": 2,
        "placement": {"hosts": 2, "agent_timeout": 10},
        "llm": {"models": {"stub": model}},
        "population.total": agents,
        "population.kinds": [kind],
    }
    return RunSpec.parse(spec_data(**changes))


def connections_to(port: int) -> list[int]:
    """The processes (other than this one) with a connection open to `port` on loopback."""
    return [
        c.pid
        for c in psutil.net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED and c.pid != os.getpid()
    ]


async def test_a_host_closes_its_language_model_client(llm_stub):
    spec = llm_run(llm_stub.url)
    host = AgentHost(0, agent_timeout=10)
    host.populate(spec.population, spec.seed, range(spec.population.total), spec.llm)
    public = dict(Simulation(spec).scenario.observe(1).public)
    batch = await host.step(1, public, {})
    assert batch.failures == 0
    assert host.llm is not None
    session = host.llm.session
    assert not session.closed
    await host.close()
    assert session.closed
    await host.close()  # twice is harmless


@pytest.mark.usefixtures("ray_cluster")
async def test_hosts_close_their_clients_on_request_and_a_simulation_stops_them_after(llm_stub):
    sim = Simulation(llm_run(llm_stub.url))
    try:
        await sim.start()
        assert (await sim.step()).failures == 0
        hosts = {s.pid for s in await sim.host_stats()}
        assert connections_to(llm_stub.port)  # kept alive for the next round
        assert set(connections_to(llm_stub.port)) <= hosts
        await asyncio.gather(*(host.close.remote() for host in sim.hosts))
        # Closed by the hosts themselves: they still answer, with no connection to the server.
        assert {s.pid for s in await sim.host_stats()} == hosts
        assert connections_to(llm_stub.port) == []
        await sim.aclose()  # what `async with Simulation(...)` does on the way out
        assert sim.hosts == []

        async def stopped() -> bool:  # ray.kill: stopped soon after
            return not any(psutil.pid_exists(pid) for pid in hosts)

        await wait_for_async(stopped, "the hosts' processes to end", 30)
    finally:
        await sim.aclose()
