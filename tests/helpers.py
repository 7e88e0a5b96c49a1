"""Agent kinds that misbehave on purpose, and a way to build hosts of them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from agents.core import Action, Agent, AgentContext, Message, Observation, Profile


def profile(agent_id: int) -> Profile:
    return Profile(agent_id, f"agent {agent_id}", "test", {}, "")


def build(kinds: list[type[Agent]], params: object = None, first: int = 0) -> list[Agent]:
    """One agent of each of `kinds`, with consecutive ids from `first`."""
    context = AgentContext(seed=1, params=params)
    return [kind(profile(first + i), context) for i, kind in enumerate(kinds)]


class Answers(Agent):
    __slots__ = ()
    synchronous = True

    def decide(self, observation: Observation) -> Action:
        return Action(self.rng(observation.round).randint(0, 100))


class Raises(Agent):
    __slots__ = ()
    synchronous = True

    def decide(self, observation: Observation) -> Action:
        raise ValueError("boom")


class RaisesLater(Agent):
    __slots__ = ()

    async def act(self, observation: Observation) -> Action:
        await asyncio.sleep(0)
        raise RuntimeError("late boom")


class Hangs(Agent):
    __slots__ = ()

    async def act(self, observation: Observation) -> Action:
        await asyncio.Event().wait()
        return Action(1)


class ReturnsJunk(Agent):
    __slots__ = ()
    synchronous = True

    def decide(self, observation: Observation) -> Action:
        return "fifty"  # type: ignore[return-value]


class ReportsError(Agent):
    __slots__ = ()
    synchronous = True

    def decide(self, observation: Observation) -> Action:
        return Action(None, error="refused to answer", tokens=7)


class Chatty(Agent):
    """Answers how many messages it received, and writes to the next agent (of `params` agents)."""

    __slots__ = ()
    synchronous = True

    def decide(self, observation: Observation) -> Action:
        recipient = (self.id + 1) % self.context.params
        note = Message(self.id, recipient, f"hello from {self.id} in round {observation.round}")
        return Action(len(observation.inbox), messages=(note,))


@dataclass
class Gauge:
    """Counts agents in flight at once."""

    now: int = 0
    peak: int = 0


class Waits(Agent):
    """Waits 50 ms like an LLM call would, counting how many others wait at the same time."""

    __slots__ = ()

    async def act(self, observation: Observation) -> Action:
        gauge: Gauge = self.context.params
        gauge.now += 1
        gauge.peak = max(gauge.peak, gauge.now)
        await asyncio.sleep(0.05)
        gauge.now -= 1
        return Action(self.id)


class ReadsNews(Agent):
    """Answers how many announcements the round's public information carries."""

    __slots__ = ()
    synchronous = True

    def decide(self, observation: Observation) -> Action:
        return Action(len(observation.public.get("announcements", ())))
