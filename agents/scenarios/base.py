"""The scenario contract: an environment that agents act in, round by round."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

from agents.core import ActionBatch, Message, NoParams

__all__ = ["Observations", "RoundResult", "Scenario"]


@dataclass(frozen=True, slots=True)
class Observations:
    """What a scenario shows agents at the start of a round.

    `public` is shared by every agent; `messages` go to the inboxes of their recipients.
    """

    public: Mapping[str, Any]
    messages: tuple[Message, ...] = ()


@dataclass(slots=True)
class RoundResult:
    """What one round produced.

    `stats` are the scenario's headline numbers (one row of the results table), `details` the rest
    (histograms, winners, ...); `time`, `failures` and `usage` (of language models) are measured
    by the engine.
    """

    round: int
    stats: dict[str, float | int | None]
    details: dict[str, Any] = field(default_factory=dict)
    time: float = 0.0
    failures: int = 0
    usage: dict[str, dict[str, int]] = field(default_factory=dict)  # language models, per model


class Scenario(ABC):
    """Base class of environments.

    A subclass declares its parameters as a pydantic model in `Params`, builds each round's
    observations, applies the agents' actions and returns the round's result. Its state between
    rounds goes through `get_state` and `set_state`, so a resumed run continues exactly.

    Args:
        params: the validated parameters.
        rounds: how many rounds the run asks for.
        population: how many agents take part (ids 0 .. population - 1).
        seed: the run seed, for scenarios that draw (a social graph, say).
    """

    Params: ClassVar[type[BaseModel]] = NoParams
    stat_names: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: BaseModel, *, rounds: int, population: int, seed: int = 0) -> None:
        self.params = params
        self.rounds = rounds
        self.population = population
        self.seed = seed

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r}, rounds={self.rounds})"

    @classmethod
    def check(cls, params: Any, *, population: int) -> None:
        """Raise ValueError, as `parameter: what is wrong`, when `params` cannot work with
        `population` agents. Specs are checked with it, so such a run is refused before it is
        queued rather than failing when it starts."""

    @abstractmethod
    def observe(self, round: int) -> Observations:
        """The observations of round `round` (1-based)."""

    @abstractmethod
    def apply(self, round: int, actions: ActionBatch) -> RoundResult:
        """Apply every agent's action of round `round`, in id order; return the round's result."""

    def done(self, round: int) -> bool:
        """Whether the run ends after round `round`; by default after the rounds asked for."""
        return round >= self.rounds

    def get_state(self) -> Any:
        """What must survive a checkpoint (picklable)."""
        return None

    def set_state(self, state: Any) -> None:
        """Restore what `get_state` returned."""
