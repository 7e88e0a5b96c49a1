"""The round loop of one run over hosts spread across a Ray cluster.

`Simulation` is the engine's driver: it places the population on `AgentHost` actors, then runs
rounds: the scenario's observations go out to every host at once, each host steps all its agents
concurrently and answers with one batch, and the scenario turns the batches into the round's
result. The workflow service wraps it with persistence, checkpoints and control.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from agents.core import ActionBatch, Message
from agents.host import HostStats, RemoteAgentHost
from agents.placement import Slot, alive_nodes, plan
from agents.scenarios import SCENARIOS, RoundResult, Scenario
from agents.spec import RunSpec

__all__ = ["Simulation"]


class Simulation:
    """One run of a spec on the connected Ray cluster.

    Use it inside a connected Ray session (see `agents.cluster.RayCluster`)::

        async with Simulation(spec) as sim:
            async for result in sim.rounds():
                print(result.round, result.stats)

    Args:
        spec: the validated run spec.
    """

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        cls = SCENARIOS.get(spec.scenario.name)
        self.scenario: Scenario = cls(
            cls.Params.model_validate(spec.scenario.params),
            rounds=spec.rounds,
            population=spec.population.total,
        )
        self.round = 0
        self.slots: list[Slot] = []
        self._hosts: list[Any] = []
        self._pending: list[Message] = []

    def __repr__(self) -> str:
        return (
            f"Simulation({self.spec.name!r}, round={self.round}/{self.spec.rounds}, hosts={len(self._hosts)})"
        )

    async def __aenter__(self) -> Simulation:
        await self.start()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    @property
    def hosts(self) -> list[Any]:
        """The run's AgentHost actors, in slot order."""
        return list(self._hosts)

    @property
    def done(self) -> bool:
        return self.round > 0 and self.scenario.done(self.round)

    async def start(self) -> list[HostStats]:
        """Place the hosts on the cluster's nodes and build every agent."""
        spec = self.spec
        self.slots = plan(alive_nodes(), spec.population.total, spec.placement.hosts)
        self._hosts = [
            RemoteAgentHost.options(
                num_cpus=slot.num_cpus,
                scheduling_strategy=NodeAffinitySchedulingStrategy(slot.node_id, soft=False),
            ).remote(slot.index, spec.placement.agent_timeout)
            for slot in self.slots
        ]
        return await asyncio.gather(
            *(
                h.populate.remote(spec.population, spec.seed, s.ids)
                for h, s in zip(self._hosts, self.slots, strict=True)
            )
        )

    async def step(self) -> RoundResult:
        """Run the next round and return its result."""
        if not self._hosts:
            raise RuntimeError("the simulation has not started")
        if self.done:
            raise RuntimeError(f"the run is over after round {self.round}")
        started = time.perf_counter()
        round = self.round + 1
        observations = self.scenario.observe(round)
        inboxes = self._route([*self._pending, *observations.messages])
        public = ray.put(dict(observations.public))
        batches: Sequence[ActionBatch] = await asyncio.gather(
            *(h.step.remote(round, public, inboxes.get(i, {})) for i, h in enumerate(self._hosts))
        )
        actions = ActionBatch.concat(batches)
        result = self.scenario.apply(round, actions)
        self._pending = actions.messages
        self.round = round
        result.failures = actions.failures
        result.time = time.perf_counter() - started
        return result

    async def rounds(self) -> AsyncIterator[RoundResult]:
        """Step until the scenario says the run is done."""
        while not self.done:
            yield await self.step()

    async def host_stats(self) -> list[HostStats]:
        return await asyncio.gather(*(h.stats.remote() for h in self._hosts))

    def close(self) -> None:
        """Stop every host of the run."""
        for host in self._hosts:
            ray.kill(host, no_restart=True)
        self._hosts = []

    def _route(self, messages: Sequence[Message]) -> dict[int, dict[int, list[Message]]]:
        """Inboxes per host index: the messages addressed to each of its agents."""
        starts = [s.ids.start for s in self.slots]
        total = self.spec.population.total
        inboxes: dict[int, dict[int, list[Message]]] = defaultdict(lambda: defaultdict(list))
        for message in messages:
            if 0 <= message.recipient < total:
                host = bisect.bisect_right(starts, message.recipient) - 1
                inboxes[host][message.recipient].append(message)
        return inboxes
