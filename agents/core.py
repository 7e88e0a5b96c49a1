"""The agent contract: the words every part of Myriad shares.

An agent has a `Profile`; each round it receives an `Observation` and answers with an `Action`.
These values are named tuples: immutable, compact, and several times quicker to build than frozen
dataclasses, which counts when a host builds a million of them per round.
Rule-based kinds implement the synchronous `decide`, which hosts call in a tight loop; kinds that
wait on I/O (LLMs, the efficiency probe) implement `async act`, which hosts run concurrently.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict

from agents.rng import Draws, agent_key, stream_key

if TYPE_CHECKING:
    from agents.columnar import Columns

__all__ = [
    "Action",
    "ActionBatch",
    "Agent",
    "AgentContext",
    "Message",
    "NoParams",
    "Observation",
    "Profile",
    "narrowest",
    "sum_usage",
]


class Profile(NamedTuple):
    """Who an agent is: its identity and background, fixed for the whole run.

    `attributes` are shared between profiles with the same combination (read-only), so a million
    profiles do not hold a million copies of the same few dictionaries.
    """

    id: int
    name: str
    kind: str
    attributes: Mapping[str, str]
    background: str


class Message(NamedTuple):
    """A message from one agent (or from the operator, `sender=None`) to another."""

    sender: int | None
    recipient: int
    content: Any


class Observation(NamedTuple):
    """What an agent sees at the start of a round.

    `public` is the same object for every agent of the round; `inbox` holds the messages addressed
    to this agent, and is empty for most of them.
    """

    round: int
    public: Mapping[str, Any]
    inbox: tuple[Message, ...] = ()


class Intervention(NamedTuple):
    """Something the operator sends into a run, delivered at the start of the next round.

    With `public` and no `where`, `content` joins the round's public information (under
    "announcements"); otherwise it arrives as a message (sender None) in the inbox of every agent
    whose attributes match all of `where` (everyone when `where` is None).
    """

    content: Any
    where: Mapping[str, str] | None = None
    public: bool = False

    def reaches(self, profile: Profile) -> bool:
        return self.where is None or all(profile.attributes.get(k) == v for k, v in self.where.items())


class Action(NamedTuple):
    """An agent's answer to one round. `error` set means the agent failed this round."""

    payload: Any = None
    messages: tuple[Message, ...] = ()
    error: str | None = None
    tokens: int = 0


class NoParams(BaseModel):
    """The parameters of a kind or scenario that takes none; unknown keys are refused."""

    model_config = ConfigDict(extra="forbid")


@dataclass(slots=True)
class AgentContext:
    """What a kind's agents share: the run seed, the kind's validated parameters, and the run's
    language models in this process (an `agents.llm.LLM`, or None when the run names none)."""

    seed: int
    params: Any = None
    llm: Any = None


class Agent:
    """Base class of agent kinds.

    Subclasses set `synchronous = True` and implement `decide` when a step never waits on I/O,
    or implement `async act` otherwise. State kept between rounds must go through `get_state` and
    `set_state` so that checkpoints capture it.

    Args:
        profile: who the agent is.
        context: the run seed and the kind's parameters, shared by all agents of the kind.
    """

    __slots__ = ("_key", "context", "profile")

    synchronous: ClassVar[bool] = False
    Params: ClassVar[type[BaseModel]] = NoParams
    # Bytes an agent takes on its host, its share of a round's work included: what a run's
    # admission check counts. Built-in rule-based agents measure 380–460 bytes once populated
    # (tracemalloc, background included); a round's batches and messages add about as much again.
    footprint: ClassVar[int] = 1_000
    # What an agent of the kind carries from one round to the next, if anything: kinds that do
    # learn across rounds; the others decide each round from what the scenario shows them alone.
    learns: ClassVar[str | None] = None
    # The kind stepped in columns (agents.columnar), used instead of these objects where it can be.
    columnar: ClassVar[type[Columns] | None] = None

    def __init__(self, profile: Profile, context: AgentContext) -> None:
        self.profile = profile
        self.context = context
        self._key = agent_key(context.seed, profile.id)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(id={self.profile.id}, name={self.profile.name!r})"

    @property
    def id(self) -> int:
        return self.profile.id

    def rng(self, round: int) -> Draws:
        """This agent's random draws for `round`: the same wherever and whenever it runs."""
        return Draws(stream_key(self._key, round))

    def decide(self, observation: Observation) -> Action:
        """The step of a synchronous kind."""
        raise NotImplementedError(f"{type(self).__name__} does not implement decide()")

    async def act(self, observation: Observation) -> Action:
        """The step of any kind; synchronous kinds need not override it."""
        return self.decide(observation)

    def get_state(self) -> Any:
        """What must survive a checkpoint (picklable); None for stateless agents."""
        return None

    def set_state(self, state: Any) -> None:
        """Restore what `get_state` returned."""


def sum_usage(parts: Iterable[Mapping[str, Mapping[str, int]]]) -> dict[str, dict[str, int]]:
    """Language-model usage (per model, counters by name) added up."""
    total: dict[str, dict[str, int]] = {}
    for part in parts:
        for model, counts in part.items():
            into = total.setdefault(model, {})
            for name, value in counts.items():
                into[name] = into.get(name, 0) + value
    return total


# Integer types from the smallest, with the range each holds.
_INTEGERS = [
    (np.dtype(t), int(np.iinfo(t).min), int(np.iinfo(t).max))
    for t in ("u1", "i1", "u2", "i2", "u4", "i4", "i8", "u8")
]


def narrowest(integers: np.ndarray) -> np.ndarray:
    """Integers as the smallest integer type that holds them all (smaller to send, and they
    compress far better); as they are when there are none."""
    if not integers.size:
        return integers
    low, high = int(integers.min()), int(integers.max())
    fits = next(dtype for dtype, least, most in _INTEGERS if least <= low and high <= most)
    return integers.astype(fits, copy=False)


@dataclass(slots=True)
class ActionBatch:
    """The actions of a contiguous range of agents in one round, in columns.

    Hosts return one batch per round instead of a million `Action` objects: payloads in id order,
    and the rarer fields (errors, tokens, messages) only for the agents that have them. When every
    payload is a number, `compact` turns the payloads into one numpy array, which crosses process
    boundaries as a single buffer.
    """

    ids: range
    payloads: list[Any] | np.ndarray
    errors: dict[int, str] = field(default_factory=dict)
    tokens: dict[int, int] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    usage: dict[str, dict[str, int]] = field(default_factory=dict)  # per model: calls, tokens, ...
    # How many of these agents each of the round's broadcasts (injected messages) reached, in order.
    reached: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def failures(self) -> int:
        return len(self.errors)

    def compact(self) -> None:
        """Store all-numeric payloads (ints, or ints and floats) as an int64 or float64 array."""
        if not isinstance(self.payloads, list) or not self.payloads:
            return
        kinds = set(map(type, self.payloads))
        if kinds == {int}:
            with contextlib.suppress(OverflowError):  # beyond 64 bits: stay exact Python ints
                self.payloads = np.array(self.payloads, dtype=np.int64)
        elif kinds <= {int, float}:
            self.payloads = np.array(self.payloads, dtype=np.float64)

    def narrow(self) -> None:
        """Store integer payloads in the smallest integer type that holds them: answers of
        0..100 then cross processes as a byte each, and a host's batch of 50,000 travels inside
        its reply instead of through the object store."""
        p = self.payloads
        if isinstance(p, np.ndarray) and p.dtype.kind in "iu":
            self.payloads = narrowest(p)

    @classmethod
    def concat(cls, batches: Sequence[ActionBatch]) -> ActionBatch:
        """Join batches of adjacent ranges, given in id order, into one."""
        if not batches:
            return cls(range(0), [])
        for before, after in itertools.pairwise(batches):
            if after.ids.start != before.ids.stop:
                raise ValueError(f"batch {after.ids} does not follow {before.ids}")
        parts = [b.payloads for b in batches]
        if all(isinstance(p, np.ndarray) for p in parts):
            payloads: list[Any] | np.ndarray = np.concatenate(parts)
        else:
            payloads = [x for p in parts for x in (p.tolist() if isinstance(p, np.ndarray) else p)]
        return cls(
            range(batches[0].ids.start, batches[-1].ids.stop),
            payloads,
            errors={k: v for b in batches for k, v in b.errors.items()},
            tokens={k: v for b in batches for k, v in b.tokens.items()},
            messages=[m for b in batches for m in b.messages],
            usage=sum_usage(b.usage for b in batches),
            reached=[sum(counts) for counts in zip(*(b.reached for b in batches), strict=True)],
        )
