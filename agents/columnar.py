"""Columnar kinds: all of a kind's agents on a host stepped by one call over numpy arrays.

A rule-based agent's `decide` costs a Python call per agent per round, which no engine can make
cheaper than a plain loop. A kind that also defines a `Columns` subclass (its `columnar`) is
stepped in columns instead: the host holds the kind's agents as arrays (their ids, random keys
and whatever state the kind keeps) and one `decide` call turns the round's observation into an
array of payloads. Random draws come from `DrawArrays`, element i being what agent i's own
`Draws` would give, so a run gives the same results on any number of hosts and after any
checkpoint, and the same as the kind's per-object agents wherever they draw alike.

A minimal columnar kind (docs/spec.md, "Writing a kind")::

    class Stubborn(Agent):                 # the per-object kind, still used where columns are not
        synchronous = True
        def decide(self, observation):
            return Action(self.rng(observation.round).randint(0, 10))

    class StubbornColumns(Columns):
        def decide(self, round, public, inbox):
            return Decisions(self.draws(round).randint(0, 10))

    Stubborn.columnar = StubbornColumns
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np
from pydantic import BaseModel

from agents.core import Agent, AgentContext, Message, Profile
from agents.rng import DrawArrays, agent_keys, stream_keys

__all__ = ["Columns", "Decisions", "ProfileColumns", "columns_of"]


class ProfileColumns(Protocol):
    """The profiles of a kind's agents on a host, read as columns: built when asked, never held
    as an object per agent."""

    def attribute(self, name: str) -> tuple[list[str], np.ndarray]:
        """An attribute's categories and each agent's category among them (its index), aligned
        with the agents' ids; no categories, and -1 for everyone, for an attribute the population
        does not have."""
        ...

    def profiles(self, positions: np.ndarray) -> list[Profile]:
        """The whole profiles of the agents at `positions` (indexes into the kind's ids)."""
        ...


class Decisions(NamedTuple):
    """What a kind's agents on a host do in one round: `payloads[i]` is the payload of agent
    `ids[i]` (a numeric array where it can be: it crosses process boundaries as one buffer), plus
    the failures (by agent id), language-model tokens (by agent id) and messages of the few agents
    that have them."""

    payloads: np.ndarray | list[Any]
    errors: Mapping[int, str] = {}
    tokens: Mapping[int, int] = {}
    messages: Sequence[Message] = ()


class Columns:
    """The agents of one kind hosted in one process, as columns.

    Subclasses implement `decide`, or set `synchronous = False` and implement `async act` when
    a round waits on I/O (a language model); a kind that keeps state between rounds holds it in
    arrays aligned with `ids` and returns them from `get_state` (a checkpoint stores the arrays,
    not an object per agent).

    Args:
        ids: the agents' ids, ascending (int64).
        context: the run seed, the kind's validated parameters and the run's language models.
        profiles: the agents' attributes and profiles, read when the kind needs them.
    """

    # Bytes per agent on its host, a round's arrays included (see `Agent.footprint`).
    footprint: ClassVar[int] = 100
    # False for kinds that never read their messages: an operator's broadcast then counts them
    # as reached without filling an inbox per agent.
    reads_inbox: ClassVar[bool] = True
    synchronous: ClassVar[bool] = True

    def __init__(self, ids: np.ndarray, context: AgentContext, profiles: ProfileColumns) -> None:
        self.ids = ids
        self.context = context
        self.profiles = profiles
        self._keys = agent_keys(context.seed, ids)

    @classmethod
    def suits(cls, params: BaseModel) -> bool:
        """Whether the kind with these parameters is stepped in columns (some kinds are only
        with an option on); otherwise its agents are objects."""
        return True

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self.ids)} agents)"

    def draws(self, round: int) -> DrawArrays:
        """The agents' random draws for `round`: element i is agent `ids[i]`'s own stream."""
        return DrawArrays(stream_keys(self._keys, round))

    def decide(
        self, round: int, public: Mapping[str, Any], inbox: Mapping[int, Sequence[Message]]
    ) -> Decisions:
        """One round of every agent: `public` is the round's public information, `inbox` the
        messages by recipient id (only the agents that have any; it may name agents of other
        kinds)."""
        raise NotImplementedError(f"{type(self).__name__} does not implement decide()")

    async def act(
        self, round: int, public: Mapping[str, Any], inbox: Mapping[int, Sequence[Message]]
    ) -> Decisions:
        """The round of a kind that waits (`synchronous = False`); the host awaits it beside its
        other agents, up to the run's `agent_timeout`."""
        return self.decide(round, public, inbox)

    def get_state(self) -> dict[str, np.ndarray] | None:
        """The state that must survive a checkpoint, as arrays aligned with `ids`; None for
        stateless kinds."""
        return None

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore what `get_state` returned (for the same ids). The arrays may be read-only
        (Ray hands them over in shared memory): copy those the kind changes in place."""

    def adopt(self, states: Sequence[Any]) -> None:
        """Restore from the states of the kind's per-object agents (`Agent.get_state`, None for
        an agent that kept none), in id order: a checkpoint written before the kind was
        columnar."""


def columns_of(kind: type[Agent], params: BaseModel, personas: bool) -> type[Columns] | None:
    """The columns a host steps `kind`'s agents in, with these parameters; None when they are
    objects: the kind has no columns, they do not suit the parameters, or the run writes personas
    (each agent's own background)."""
    columnar = kind.columnar
    if columnar is None or personas or not columnar.suits(params):
        return None
    return columnar
