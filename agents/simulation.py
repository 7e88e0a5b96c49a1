"""The round loop of one run over hosts spread across a Ray cluster.

`Simulation` is the engine's driver: it places the population on `AgentHost` actors, then runs
rounds: the scenario's observations go out to every host at once, each host steps all its agents
concurrently and answers with one batch, and the scenario turns the batches into the round's
result. The workflow service wraps it with persistence, checkpoints and control.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from types import TracebackType
from typing import Any

import numpy as np
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from agents.core import ActionBatch, Intervention, Message, sum_usage
from agents.host import HostStats, RemoteAgentHost
from agents.placement import Slot, alive_nodes, plan
from agents.scenarios import SCENARIOS, RoundResult, Scenario
from agents.spec import RunSpec

__all__ = ["Simulation"]

_INLINE_HOSTS = 4


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
            seed=spec.seed,
        )
        self.round = 0
        self.slots: list[Slot] = []
        self._hosts: list[Any] = []
        self._pending: list[Message] = []
        self._interventions: list[Intervention] = []
        self.last_actions: ActionBatch | None = None
        # What the last round delivered of what was injected, with how many agents each reached.
        self.delivered: list[tuple[Intervention, int]] = []
        self._starts: list[int] = []

    def __repr__(self) -> str:
        return (
            f"Simulation({self.spec.name!r}, round={self.round}/{self.spec.rounds}, hosts={len(self._hosts)})"
        )

    async def __aenter__(self) -> Simulation:
        await self.start()
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        await self.aclose()

    @property
    def hosts(self) -> list[Any]:
        """The run's AgentHost actors, in slot order."""
        return list(self._hosts)

    @property
    def done(self) -> bool:
        return self.round > 0 and self.scenario.done(self.round)

    async def start(
        self,
        exclude: Collection[str] = (),
        busy: Mapping[str, int] | None = None,
        slots: Sequence[Slot] | None = None,
    ) -> list[HostStats]:
        """Place the hosts on the cluster's nodes (but those in `exclude`, e.g. just lost) by
        their free CPUs (`busy`: hosts of other runs per node), or where `slots` say (a run's
        hosts started again where they were), and build every agent."""
        spec = self.spec
        if slots is None:
            nodes = [n for n in alive_nodes() if n.node_id not in exclude]
            slots = plan(nodes, spec.population.total, spec.placement.hosts, busy)
        self.slots = list(slots)
        self._starts = [slot.ids.start for slot in self.slots]
        self._hosts = [
            RemoteAgentHost.options(
                # Reserve no CPU: runs share the cluster's cores instead of queueing behind each other.
                num_cpus=0,
                scheduling_strategy=NodeAffinitySchedulingStrategy(slot.node_id, soft=False),
            ).remote(slot.index, spec.placement.agent_timeout)
            for slot in self.slots
        ]
        return await asyncio.gather(
            *(
                h.populate.remote(spec.population, spec.seed, s.ids, spec.llm)
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
        public = dict(observations.public)
        injected, self._interventions = self._interventions, []
        broadcasts = [i for i in injected if not (i.public and i.where is None)]
        if announcements := [i.content for i in injected if i.public and i.where is None]:
            public["announcements"] = announcements
        # One copy in the object store for every host, unless it is small enough to travel inside
        # each call: a put costs about a millisecond, a round's fixed cost is a few.
        shared = ray.put(public) if len(self._hosts) > _INLINE_HOSTS else public
        batches: Sequence[ActionBatch] = await asyncio.gather(
            *(h.step.remote(round, shared, inboxes.get(i, {}), broadcasts) for i, h in enumerate(self._hosts))
        )
        actions = self.last_actions = ActionBatch.concat(batches)
        # An announcement is everyone's public information; a broadcast reaches whom the hosts found.
        counts = iter(actions.reached)
        everyone = self.spec.population.total
        self.delivered = [(i, everyone if i.public and i.where is None else next(counts)) for i in injected]
        result = self.scenario.apply(round, actions)
        self._pending = actions.messages
        self.round = round
        result.failures = actions.failures
        result.usage = actions.usage
        result.time = time.perf_counter() - started
        return result

    async def write_personas(
        self, on_progress: Callable[[int], Awaitable[None]] | None = None, every: float = 1.0
    ) -> tuple[int, int]:
        """Have the run's model write every agent's background (the spec's `population.persona`),
        all hosts at once, calling `on_progress(done)` every `every` seconds (what it raises ends
        the writing); returns (written, kept from the template)."""
        persona = self.spec.population.persona
        if persona is None:
            raise RuntimeError("the spec asks for no personas")
        tasks = [h.write_personas.remote(persona) for h in self._hosts]
        writing = asyncio.gather(*tasks)
        try:
            while not (await asyncio.wait([writing], timeout=every))[0]:
                if on_progress is not None:
                    await on_progress(
                        sum(await asyncio.gather(*(h.persona_progress.remote() for h in self._hosts)))
                    )
        except BaseException:
            # `on_progress` may cut the writing short: the hosts stop asking the model too.
            writing.cancel()
            writing.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen: not logged
            for task in tasks:
                ray.cancel(task)
            raise
        results = writing.result()
        return sum(w for w, _ in results), sum(k for _, k in results)

    async def take_usage(self) -> dict[str, dict[str, int]]:
        """The hosts' language-model use outside rounds (writing personas) since last taken."""
        return sum_usage(await asyncio.gather(*(h.take_usage.remote() for h in self._hosts)))

    async def backgrounds(self, ids: range) -> list[str]:
        """The backgrounds of agents `ids`, which must all be on one host (a slot's range or part)."""
        return await self._hosts[self._host_of(ids.start)].backgrounds.remote(ids)

    async def set_backgrounds(self, start: int, backgrounds: Sequence[str]) -> None:
        """Give agents from `start` on these backgrounds (all on one host)."""
        await self._hosts[self._host_of(start)].set_backgrounds.remote(start, list(backgrounds))

    def inject(self, intervention: Intervention) -> None:
        """Deliver `intervention` at the start of the next round."""
        self._interventions.append(intervention)

    async def get_state(self) -> dict[str, Any]:
        """Everything needed to continue after the current round: the round, the scenario's
        state, messages in flight, and the state of every agent that keeps one (objects' by id,
        columns' as arrays by kind)."""
        states = await asyncio.gather(*(h.get_state.remote() for h in self._hosts))
        parts: dict[int, list[Mapping[str, np.ndarray]]] = defaultdict(list)
        for state in states:  # hosts in id order, so each kind's arrays join in id order
            for index, part in state["columns"].items():
                parts[index].append(part)
        return {
            "round": self.round,
            "scenario": self.scenario.get_state(),
            "pending": list(self._pending),
            "agents": {agent_id: value for state in states for agent_id, value in state["agents"].items()},
            "columns": {
                index: {name: np.concatenate([p[name] for p in kind]) for name in kind[0]}
                for index, kind in parts.items()
            },
        }

    async def set_state(self, state: dict[str, Any]) -> None:
        """Continue from what `get_state` returned, on hosts placed anew (their number may differ)."""
        self.round = state["round"]
        self.scenario.set_state(state["scenario"])
        self._pending = list(state["pending"])
        shards: list[dict[str, Any]] = [{"agents": {}, "columns": {}} for _ in self._hosts]
        for agent_id, value in state["agents"].items():
            shards[self._host_of(agent_id)]["agents"][agent_id] = value
        bounds = [*self._starts, self.spec.population.total]
        for index, part in state.get("columns", {}).items():  # none in checkpoints from before columns
            cuts = np.searchsorted(part["ids"], bounds)
            for shard, low, high in zip(shards, cuts[:-1], cuts[1:], strict=True):
                if high > low:
                    shard["columns"][index] = {name: array[low:high] for name, array in part.items()}
        await asyncio.gather(
            *(h.set_state.remote(shard) for h, shard in zip(self._hosts, shards, strict=True))
        )

    async def rounds(self) -> AsyncIterator[RoundResult]:
        """Step until the scenario says the run is done."""
        while not self.done:
            yield await self.step()

    async def host_stats(self) -> list[HostStats]:
        return await asyncio.gather(*(h.stats.remote() for h in self._hosts))

    async def lost_slots(self, timeout: float = 10.0) -> list[Slot]:
        """The slots whose host no longer answers (its process or its node is gone)."""

        async def answers(host: Any) -> bool:
            try:
                await asyncio.wait_for(host.stats.remote(), timeout)
            except (ray.exceptions.RayError, TimeoutError):
                return False
            return True

        alive = await asyncio.gather(*(answers(h) for h in self._hosts))
        return [slot for slot, ok in zip(self.slots, alive, strict=True) if not ok]

    async def aclose(self, timeout: float = 5.0) -> None:
        """Stop every host of the run, after giving them `timeout` seconds to close their
        language-model clients; a host that is gone or does not answer in time is stopped anyway."""
        hosts, self._hosts = self._hosts, []
        try:
            closing = asyncio.gather(*(h.close.remote() for h in hosts), return_exceptions=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closing, timeout)
        finally:
            for host in hosts:
                ray.kill(host, no_restart=True)

    def _host_of(self, agent_id: int) -> int:
        return bisect.bisect_right(self._starts, agent_id) - 1

    def _route(self, messages: Sequence[Message]) -> dict[int, dict[int, list[Message]]]:
        """Inboxes per host index: the messages addressed to each of its agents."""
        total = self.spec.population.total
        inboxes: dict[int, dict[int, list[Message]]] = defaultdict(lambda: defaultdict(list))
        for message in messages:
            if 0 <= message.recipient < total:
                inboxes[self._host_of(message.recipient)][message.recipient].append(message)
        return inboxes
