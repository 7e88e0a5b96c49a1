"""Rule-based and probe kinds for number-guessing games such as guess-2/3-of-the-average.

They read the game from the round's public information: `max_value` (answers are integers in
0..max_value), `ratio` (the target is ratio × mean) and, when the scenario shows it, `last` (the
previous round's statistics, with its target under `win`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from agents.columnar import Columns, Decisions, ProfileColumns
from agents.core import Action, Agent, AgentContext, Message, NoParams, Observation, Profile
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


class UniformColumns(Columns):
    reads_inbox = False

    def decide(
        self, round: int, public: Mapping[str, Any], inbox: Mapping[int, Sequence[Message]]
    ) -> Decisions:
        return Decisions(self.draws(round).randint(0, public["max_value"]))


UniformRandom.columnar = UniformColumns


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


class LevelKColumns(Columns):
    reads_inbox = False

    def decide(
        self, round: int, public: Mapping[str, Any], inbox: Mapping[int, Sequence[Message]]
    ) -> Decisions:
        k = self.context.params.k
        if k == 0:
            return Decisions(self.draws(round).randint(0, public["max_value"]))
        # np.rint, as the `round` parameter hides the builtin: both round half to even.
        answer = int(np.rint(public["max_value"] / 2 * public["ratio"] ** k))
        return Decisions(np.full(len(self), answer, dtype=np.int64))


LevelK.columnar = LevelKColumns


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


class AdaptiveColumns(Columns):
    """`Adaptive` in columns: `answer` holds each agent's last answer, `started` whether it has
    one yet (an agent restored without a state starts again at random, as the object would)."""

    reads_inbox = False

    def __init__(self, ids: np.ndarray, context: AgentContext, profiles: ProfileColumns) -> None:
        super().__init__(ids, context, profiles)
        self.answer = np.zeros(len(ids), dtype=np.int64)
        self.started = np.zeros(len(ids), dtype=bool)

    def decide(
        self, round: int, public: Mapping[str, Any], inbox: Mapping[int, Sequence[Message]]
    ) -> Decisions:
        last = public.get("last")
        if not last or last.get("win") is None:
            answer = self.draws(round).randint(0, public["max_value"])
        else:
            # np.rint rounds half to even, as Python's round: the same answers as the objects'.
            answer = np.rint(self.answer + self.context.params.rate * (last["win"] - self.answer)).astype(
                np.int64
            )
            fresh = ~self.started
            if fresh.any():
                answer[fresh] = self.draws(round).randint(0, public["max_value"])[fresh]
        self.answer = answer
        self.started[:] = True
        return Decisions(answer)

    def get_state(self) -> dict[str, np.ndarray]:
        return {"answer": self.answer, "started": self.started}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        self.answer = np.array(state["answer"], dtype=np.int64)
        self.started = np.array(state["started"], dtype=bool)  # a copy: Ray's arrays are read-only

    def adopt(self, states: Sequence[Any]) -> None:
        self.started = np.fromiter((s is not None for s in states), bool, len(states))
        self.answer = np.fromiter((0 if s is None else s for s in states), np.int64, len(states))


Adaptive.columnar = AdaptiveColumns


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
