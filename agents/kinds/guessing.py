"""Rule-based and probe kinds for number-guessing games such as guess-2/3-of-the-average.

They read the game from the round's public information: `max_value` (answers are integers in
0..max_value), `ratio` (the target is ratio × mean) and, when the scenario shows it, `last` (the
previous round's statistics, with its target under `win`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from agents.core import Action, Agent, AgentContext, NoParams, Observation, Profile
from agents.numbers import show

if TYPE_CHECKING:
    from agents.survey import Question

__all__ = ["Adaptive", "EfficiencyProbe", "Guesser", "LevelK", "UniformRandom"]


class Guesser(Agent):
    """A kind that plays a number-guessing game by a rule of its own."""

    __slots__ = ()

    @classmethod
    def survey(
        cls, params: BaseModel, profile: Profile, question: Question, answers: Mapping[int, Any]
    ) -> str | None:
        """A survey's number question is answered with the agent's last recorded guess (its
        `answers` by round); it has nothing to say to other questions, nor before it guessed."""
        if question.type != "number" or not answers:
            return None
        last = answers[max(answers)]
        return show(last) if isinstance(last, int | float) else None


class UniformRandom(Guesser):
    """Answers uniformly at random each round."""

    __slots__ = ()
    synchronous = True

    def decide(self, observation: Observation) -> Action:
        return Action(self.rng(observation.round).randint(0, observation.public["max_value"]))


class LevelKParams(NoParams):
    k: int = Field(1, ge=0, le=3, description="depth of reasoning; level 0 answers at random")


class LevelK(Guesser):
    """A level-k reasoner: it best-responds to a crowd of level-(k-1) players.

    Level 0 answers at random (mean max/2), so level k answers max/2 × ratio^k.
    """

    __slots__ = ()
    synchronous = True
    Params = LevelKParams

    def decide(self, observation: Observation) -> Action:
        public = observation.public
        k = self.context.params.k
        if k == 0:
            return Action(self.rng(observation.round).randint(0, public["max_value"]))
        return Action(round(public["max_value"] / 2 * public["ratio"] ** k))


class AdaptiveParams(NoParams):
    rate: float = Field(0.5, gt=0, le=1, description="share of the way to last round's target")


class Adaptive(Guesser):
    """Starts at random, then moves its answer toward the previous round's target."""

    __slots__ = ("answer",)
    synchronous = True
    Params = AdaptiveParams
    learns = "its answer, moved toward each round's target"

    def __init__(self, profile: Profile, context: AgentContext) -> None:
        super().__init__(profile, context)
        self.answer: int | None = None

    def decide(self, observation: Observation) -> Action:
        last = observation.public.get("last")
        if self.answer is None or not last or last.get("win") is None:
            self.answer = self.rng(observation.round).randint(0, observation.public["max_value"])
        else:
            self.answer = round(self.answer + self.context.params.rate * (last["win"] - self.answer))
        return Action(self.answer)

    def get_state(self) -> Any:
        return self.answer

    def set_state(self, state: Any) -> None:
        self.answer = state


class ProbeParams(NoParams):
    delay: float = Field(1.0, ge=0, le=3600, description="seconds to wait before answering")


class EfficiencyProbe(Guesser):
    """The paper's efficiency probe: waits `delay` seconds without blocking, then answers at random.

    It stands in for an LLM call's latency, so a round of N probes measures how well the engine
    overlaps waiting agents.
    """

    __slots__ = ()
    Params = ProbeParams

    async def act(self, observation: Observation) -> Action:
        await asyncio.sleep(self.context.params.delay)
        return Action(self.rng(observation.round).randint(0, observation.public["max_value"]))
