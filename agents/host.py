"""AgentHost: one process that hosts a shard of many agents and steps them round by round.

`AgentHost` is a plain class, tested without Ray; `RemoteAgentHost` is the same class as an async
Ray actor. One actor holds thousands to hundreds of thousands of agents: an actor is a process of
about 85 MiB, so one per agent does not scale.
"""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psutil
import ray

from agents.columnar import Columns, Decisions
from agents.core import Action, ActionBatch, Agent, Intervention, Message, Observation
from agents.llm import LLM, LLMSpec
from agents.personas import PersonaSpec, write_persona
from agents.population import Population
from agents.spec import PopulationSpec

__all__ = ["AgentHost", "HostStats", "RemoteAgentHost"]

# Synchronous agents run in slices of this many between yields to the event loop, so that waiting
# agents make progress and the host answers `stats` during a long round.
_SLICE = 4096
# Waiting agents are started this many at a time between yields: a model call is sent from a task
# of its own (aiohttp on Python 3.11), which runs only after every agent started before it.
_WAITING_SLICE = 64
_PERSONA_WRITERS = 10_000  # concurrent persona writers per host; the model's pool bounds the calls


@dataclass(frozen=True, slots=True)
class HostStats:
    index: int
    node_id: str | None
    hostname: str
    pid: int
    agents: int
    steps: int
    failures: int
    rounds: int
    last_round_seconds: float
    rss_bytes: int


# New container objects between two collections of the youngest generation (Python's default:
# 700). A round of model calls makes a few hundred thousand that live about a second, in flight:
# at 700 the collector ran ~400 times a round and walked the calls in flight again and again
# (0.4-0.7 s of a round of 5,000 calls that takes 6 s; 0.04-0.08 s at 50,000).
_GC_YOUNG = 50_000


def _settle() -> None:
    """Exempt the hosted agents from garbage collection: they live as long as the host, and
    otherwise every full collection during a round would walk all of them again. Collect young
    objects less often (`_GC_YOUNG`)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG, *gc.get_threshold()[1:])


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _record(batch: ActionBatch, offset: int, action: Action) -> None:
    """Put the action of the agent at `offset` into the batch."""
    if type(action) is not Action:
        raise TypeError(f"act() returned {type(action).__name__}, not an Action")
    batch.payloads[offset] = action.payload
    if action.error is not None or action.tokens or action.messages:
        agent_id = batch.ids.start + offset
        if action.error is not None:
            batch.errors[agent_id] = action.error
        if action.tokens:
            batch.tokens[agent_id] = action.tokens
        batch.messages.extend(action.messages)


class _Waiting:
    """The asynchronous agents of one round.

    Each records its own action as it finishes and the last one wakes the host: no per-agent
    done-callbacks or wait sets, which cost more than a waiting agent's whole step.
    """

    __slots__ = ("all_done", "batch", "left", "tasks")

    def __init__(self, batch: ActionBatch) -> None:
        self.batch = batch
        self.tasks: list[tuple[int, asyncio.Task[None]]] = []  # strong references keep tasks alive
        self.left = 0
        self.all_done = asyncio.get_running_loop().create_future()

    def start(self, offset: int, step: Awaitable[Action]) -> None:
        self.left += 1
        self.tasks.append((offset, asyncio.ensure_future(self._run(offset, step))))

    async def _run(self, offset: int, step: Awaitable[Action]) -> None:
        try:
            _record(self.batch, offset, await step)
        except Exception as exc:  # an agent's bug must not end the round
            self.batch.errors[self.batch.ids.start + offset] = _describe(exc)
        finally:
            self.left -= 1
            if not self.left and not self.all_done.done():
                self.all_done.set_result(None)

    async def finish(self, timeout: float) -> None:
        """Wait for every agent, up to one deadline for all: a timer per agent would cost more."""
        if self.left:
            await asyncio.wait([self.all_done], timeout=timeout)
        late = [(offset, task) for offset, task in self.tasks if not task.done()]
        for _, task in late:
            task.cancel()
        if late:
            await asyncio.wait([task for _, task in late], timeout=1.0)
        for offset, _ in late:
            self.batch.errors[self.batch.ids.start + offset] = f"TimeoutError: no action within {timeout:g} s"


def _payloads(
    count: int, decided: Sequence[tuple[np.ndarray, Decisions]], objects: bool
) -> list[Any] | np.ndarray:
    """The round's payloads of `count` agents as the columns `decided` them (at their offsets):
    one numeric array when every agent is in numeric columns, otherwise (or when `objects` have
    yet to give theirs) a list to fill in."""
    parts = [(offsets, decisions.payloads) for offsets, decisions in decided]
    numeric = [(o, p) for o, p in parts if isinstance(p, np.ndarray) and p.dtype.kind in "iuf"]
    if parts and not objects and len(numeric) == len(parts):
        if len(numeric) == 1:  # one kind holds every agent, in order
            return numeric[0][1]
        out = np.empty(count, np.result_type(*(array for _, array in numeric)))
        for offsets, array in numeric:
            out[offsets] = array
        return out
    payloads: list[Any] = [None] * count
    for offsets, values in parts:
        for offset, value in zip(offsets.tolist(), _values(values), strict=True):
            payloads[offset] = value
    return payloads


def _values(payloads: np.ndarray | list[Any]) -> list[Any]:
    return payloads.tolist() if isinstance(payloads, np.ndarray) else payloads


def _merge(batch: ActionBatch, decisions: Decisions) -> None:
    batch.errors.update(decisions.errors)
    batch.tokens.update(decisions.tokens)
    batch.messages.extend(decisions.messages)


def _counted(columns: Columns, decisions: Decisions, method: str) -> Decisions:
    """`decisions` as `method` gave them, checked to hold a payload for each of the columns' agents."""
    if len(decisions.payloads) != len(columns):
        raise ValueError(f"{method}() gave {len(decisions.payloads)} payloads for {len(columns)} agents")
    return decisions


def _failed(columns: Columns, error: str) -> Decisions:
    """Every agent of `columns` failed the round with `error`."""
    return Decisions([None] * len(columns), dict.fromkeys(columns.ids.tolist(), error))


class AgentHost:
    """Hosts agents `ids` of a run and steps them all each round.

    Args:
        index: this host's place among the run's hosts.
        agent_timeout: seconds an asynchronous agent may take in one round before it fails.
    """

    def __init__(self, index: int, agent_timeout: float) -> None:
        self.index = index
        self.agent_timeout = agent_timeout
        self.ids = range(0)
        self.population: Population | None = None
        # Kinds stepped as objects, with their positions among `ids`, and kinds stepped in
        # columns: (index of the kind in the spec, its columns, their positions).
        self.agents: list[Agent] = []
        self._offsets: list[int] = []
        self.groups: list[tuple[int, Columns, np.ndarray]] = []
        self.llm: LLM | None = None
        self._personas = [0, 0]  # written, kept from the template
        self._steps = 0
        self._failures = 0
        self._rounds = 0
        self._last_round_seconds = 0.0

    def __repr__(self) -> str:
        return f"AgentHost(index={self.index}, ids={self.ids})"

    def populate(
        self, population: PopulationSpec, seed: int, ids: range, llm: LLMSpec | None = None
    ) -> HostStats:
        """Build this host's agents from the population spec and the run seed; with `llm`, give
        them the run's language models (one HTTP session and endpoint pool per host)."""
        self.ids = ids
        self.llm = LLM(llm) if llm is not None else None
        self.population = Population(population, seed, self.llm)
        hosted = self.population.hosted(ids)
        self.agents, self._offsets, self.groups = hosted.agents, hosted.offsets, hosted.groups
        _settle()
        return self.stats()

    async def write_personas(self, spec: PersonaSpec) -> tuple[int, int]:
        """Have the run's model write every hosted agent's background; returns (written, kept):
        an agent whose persona could not be written keeps its template background. The model's
        pool bounds the calls in flight; `persona_progress` tells how far it got, `take_usage`
        what it cost."""
        assert self.llm is not None, "personas need the run's language models"
        pool = self.llm.model(spec.model)
        self._personas = [0, 0]
        waiting = iter(self.agents)  # shared: each writer takes the next agent

        async def writer() -> None:
            for agent in waiting:
                persona = await write_persona(pool, agent.profile, spec)
                if persona is not None:
                    agent.profile = agent.profile._replace(background=persona)
                self._personas[persona is None] += 1

        await asyncio.gather(*(writer() for _ in range(min(_PERSONA_WRITERS, len(self.agents)))))
        written, kept = self._personas
        return written, kept

    def persona_progress(self) -> int:
        """How many agents' personas are done (written or given up)."""
        return sum(self._personas)

    def take_usage(self) -> dict[str, dict[str, int]]:
        """The language-model use since it was last taken (by this or by a round)."""
        return self.llm.take_usage() if self.llm is not None else {}

    def backgrounds(self, ids: range) -> list[str]:
        """The backgrounds of agents `ids` (hosted here), in id order."""
        if self.groups:  # no personas (see `Population.hosted`): every background is its template
            assert self.population is not None
            return [p.background for p in self.population.profiles(ids)]
        return [self.agents[i - self.ids.start].profile.background for i in ids]

    def set_backgrounds(self, start: int, backgrounds: Sequence[str]) -> None:
        """Give agents `start`, `start + 1`, ... these backgrounds (written before a takeover)."""
        if self.groups:
            raise RuntimeError("written backgrounds are for runs with personas, whose agents are objects")
        for offset, background in enumerate(backgrounds, start - self.ids.start):
            agent = self.agents[offset]
            agent.profile = agent.profile._replace(background=background)

    def add(self, agents: Sequence[Agent]) -> None:
        """Host ready-made agents, with ids following those already hosted (used by tests and
        by kinds built outside a population)."""
        for offset, agent in enumerate(agents):
            if agent.id != self.ids.stop + offset:
                raise ValueError(f"agent {agent.id} does not follow ids {self.ids}")
        self.agents.extend(agents)
        self._offsets.extend(range(len(self.ids), len(self.ids) + len(agents)))
        self.ids = range(self.ids.start, self.ids.stop + len(agents))
        _settle()

    async def step(
        self,
        round: int,
        public: Mapping[str, Any],
        inbox: Mapping[int, Sequence[Message]],
        broadcasts: Sequence[Intervention] = (),
    ) -> ActionBatch:
        """Run one round: every agent acts on `public` and its messages in `inbox`, plus the
        `broadcasts` whose filter its profile matches.

        An agent that raises, returns something other than an `Action`, or (if asynchronous) takes
        longer than `agent_timeout` gets a failed action; the round goes on without it.
        """
        started = time.perf_counter()
        reached: list[int] = []
        if broadcasts:
            inbox, reached = self._deliver(inbox, broadcasts)
        decided = [
            (offsets, self._decide(columns, round, public, inbox))
            for _, columns, offsets in self.groups
            if columns.synchronous
        ]
        acting = [
            (offsets, columns, asyncio.ensure_future(columns.act(round, public, inbox)))
            for _, columns, offsets in self.groups
            if not columns.synchronous
        ]
        # Objects write into a list as they go; without objects the columns' arrays are joined
        # once all have answered (below), into one array when they are numeric.
        payloads = _payloads(len(self.ids), decided, True) if self.agents else []
        batch = ActionBatch(self.ids, payloads, reached=reached)
        shared = Observation(round, public)
        first = self.ids.start
        waiting = _Waiting(batch)
        payloads, agents, offsets = batch.payloads, self.agents, self._offsets
        for start in range(0, len(agents), _SLICE):
            for offset, agent in zip(
                offsets[start : start + _SLICE], agents[start : start + _SLICE], strict=True
            ):
                observation = shared
                if inbox and (messages := inbox.get(first + offset)):
                    observation = Observation(round, public, tuple(messages))
                if not agent.synchronous:
                    waiting.start(offset, agent.act(observation))
                    if not len(waiting.tasks) % _WAITING_SLICE:
                        await asyncio.sleep(0)
                    continue
                try:
                    action = agent.decide(observation)
                    # The common case inline: this loop is the engine's hot path for objects.
                    if (
                        type(action) is Action
                        and action.error is None
                        and not (action.tokens or action.messages)
                    ):
                        payloads[offset] = action.payload
                    else:
                        _record(batch, offset, action)
                except Exception as exc:  # an agent's bug must not end the round
                    batch.errors[first + offset] = _describe(exc)
            await asyncio.sleep(0)
        deadline = time.perf_counter() + self.agent_timeout  # for everything still waiting
        await waiting.finish(self.agent_timeout)
        acted = [
            (positions, await self._acted(columns, task, deadline - time.perf_counter()))
            for positions, columns, task in acting
        ]
        if self.agents:
            for positions, decisions in acted:
                for offset, value in zip(positions.tolist(), _values(decisions.payloads), strict=True):
                    batch.payloads[offset] = value
        else:
            batch.payloads = _payloads(len(self.ids), decided + acted, False)
        for _, decisions in decided + acted:
            _merge(batch, decisions)
        if self.llm is not None:
            batch.usage = self.llm.take_usage()
        batch.compact()
        batch.narrow()
        self._steps += len(self.ids)
        self._failures += batch.failures
        self._rounds += 1
        self._last_round_seconds = time.perf_counter() - started
        return batch

    @staticmethod
    async def _acted(columns: Columns, task: asyncio.Future[Decisions], timeout: float) -> Decisions:
        """What a waiting kind's `act` gave, or a failure for each of its agents when it raised,
        gave the wrong number of payloads or took longer than `timeout`."""
        try:
            decisions = _counted(columns, await asyncio.wait_for(task, max(timeout, 0)), "act")
        except TimeoutError:
            return _failed(columns, "TimeoutError: no action within the round's time")
        except Exception as exc:
            return _failed(columns, _describe(exc))
        return decisions

    @staticmethod
    def _decide(
        columns: Columns, round: int, public: Mapping[str, Any], inbox: Mapping[int, Sequence[Message]]
    ) -> Decisions:
        """One round of a kind's columns; a bug in them fails each of their agents, not the round."""
        try:
            decisions = _counted(columns, columns.decide(round, public, inbox), "decide")
        except Exception as exc:
            return _failed(columns, _describe(exc))
        return decisions

    def _deliver(
        self, inbox: Mapping[int, Sequence[Message]], broadcasts: Sequence[Intervention]
    ) -> tuple[dict[int, list[Message]], list[int]]:
        """The inbox with the broadcasts added to their agents' messages, and how many agents
        each broadcast reached. Agents in columns that read no messages are counted, but their
        inboxes are not filled."""
        merged = {agent_id: list(messages) for agent_id, messages in inbox.items()}
        reached = []
        readers = np.zeros(len(self.ids), dtype=bool)
        readers[self._offsets] = True
        for _, columns, offsets in self.groups:
            readers[offsets] = columns.reads_inbox
        for broadcast in broadcasts:
            if self.population is None:  # agents added one by one: only their profiles know
                found = np.array([broadcast.reaches(a.profile) for a in self.agents], dtype=bool)
            else:
                found = self.population.matches(broadcast.where, self.ids)
            for offset in np.flatnonzero(found & readers).tolist():
                agent_id = self.ids.start + offset
                merged.setdefault(agent_id, []).append(Message(None, agent_id, broadcast.content))
            reached.append(int(found.sum()))
        return merged, reached

    def get_state(self) -> dict[str, Any]:
        """The state of every agent that keeps one: objects' by agent id, columns' as arrays by
        the kind's index in the spec (with their `ids`)."""
        return {
            "agents": {a.id: state for a in self.agents if (state := a.get_state()) is not None},
            "columns": {
                index: {"ids": columns.ids, **state}
                for index, columns, _ in self.groups
                if (state := columns.get_state()) is not None
            },
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Restore what `get_state` returned for these agents (joined or split across hosts).
        Columns restore also from their agents' states as objects (a checkpoint written before
        their kind had columns)."""
        agents: Mapping[int, Any] = state.get("agents", {})
        columns_state: Mapping[int, Mapping[str, np.ndarray]] = state.get("columns", {})
        for agent in self.agents:
            if agent.id in agents:
                agent.set_state(agents[agent.id])
        for index, columns, _ in self.groups:
            if (part := columns_state.get(index)) is not None:
                if not np.array_equal(part["ids"], columns.ids):
                    raise ValueError(f"the state of kind {index} is for other agents than this host's")
                columns.set_state({name: array for name, array in part.items() if name != "ids"})
            elif agents:
                objects = [agents.get(agent_id) for agent_id in columns.ids.tolist()]
                if any(s is not None for s in objects):
                    columns.adopt(objects)

    def stats(self) -> HostStats:
        node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        return HostStats(
            index=self.index,
            node_id=node_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            agents=len(self.ids),
            steps=self._steps,
            failures=self._failures,
            rounds=self._rounds,
            last_round_seconds=self._last_round_seconds,
            rss_bytes=psutil.Process().memory_info().rss,
        )

    async def close(self) -> None:
        """Close the language-model client (its HTTP connections) before the host is stopped:
        `ray.kill` ends the process at once, with nothing closed. Idempotent."""
        if self.llm is not None:
            await self.llm.close()


# The async methods make it an async actor: one event loop runs every agent of the shard.
RemoteAgentHost = ray.remote(AgentHost)
