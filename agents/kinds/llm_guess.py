"""A participant of guess-ratio-of-the-average driven by a language model, as in the paper.

Its system prompt is one of the paper's variants — the plain rules, "all players are rational",
"think about the others' strategies" — and its user prompt one of the paper's two: report the
number directly, or think step by step. It remembers the last `remember` rounds (its answer, the
mean and the target), or keeps a running summary of all of them, so long runs never overflow the
model's context.

The prompt is laid out for the servers' prefix caches: what every agent of the round is told (the
rules and variant, the round, its announcements, the remembered means and targets, the user
prompt) comes first, and what is the agent's own (its earlier answers, its messages, then its name
and background when `persona` is on) last, so a server computes the shared part once per round.

The answer is read robustly (the last number in range); when none can be read and `extract` is on,
a second call asks the model for the number alone, as the paper does. An answer that still cannot
be read is recorded as invalid, which the scenario leaves out of `cnt`; a call that fails after its
retries makes the agent fail the round.

With `archetypes`, the agents answer through their archetype's calls instead of one each
(`LLMGuessArchetypes`, in columns; agents/archetypes.py): the same prompt, with the archetype's
attributes for a persona and its memory for the agent's.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from typing import Any, Literal, NamedTuple, TypeVar

import numpy as np
from pydantic import BaseModel, Field

from agents.archetypes import Archetypes, Grouping, choose
from agents.columnar import Columns, Decisions, ProfileColumns
from agents.core import Action, Agent, AgentContext, Message, NoParams, Observation, Profile
from agents.llm import LLMError, ModelPool
from agents.numbers import last_number
from agents.personas import in_character, recent

__all__ = ["LLMGuessArchetypes", "LLMGuessParams", "LLMGuesser", "read_number"]

SYSTEMS = {
    "plain": "",
    "rational": " All players are rational.",
    "strategic": " Think about how the other players will choose their numbers before you choose yours.",
}
USERS = {
    "direct": "Report your number directly, without any other words.",
    "step_by_step": "Think step by step, then report your number.",
}
_T = TypeVar("_T")
_LAUNCH = 64  # calls started between two yields (see _in_slices)
EXTRACT = "Extract the number that this answer finally chooses; reply with the number only. Answer: "


class LLMGuessParams(NoParams):
    model: str = Field(description="a model named in the spec's llm.models")
    system: Literal["plain", "rational", "strategic"] = Field(
        "plain", description="the paper's system prompt"
    )
    persona: bool = Field(True, description="tell the model the agent's name and background")
    prompt: Literal["direct", "step_by_step"] = Field("direct", description="the paper's user prompt")
    memory: Literal["last", "summary"] = Field(
        "last", description="last rounds verbatim, or a running summary"
    )
    remember: int = Field(3, ge=0, le=1000, description="rounds kept verbatim with memory=last")
    extract: bool = Field(True, description="ask again for the number alone when none can be read")
    turn_timeout: float = Field(60.0, gt=0, le=3600, description="seconds for the agent's whole turn")
    max_tokens: int | None = Field(None, ge=1, le=100_000, description="default: the model's")
    temperature: float | None = Field(None, ge=0, le=2, description="default: the model's")
    archetypes: Archetypes | None = Field(
        None, description="answer through archetypes' calls (by, samples); default: a call per agent"
    )


def read_number(text: str, ceiling: float) -> float | None:
    """The last number in `text` within 0..ceiling (what a rambling answer settles on), if any;
    a whole number as an int."""
    value = last_number(text, 0, ceiling)
    if value is None:
        return None
    return int(value) if value.is_integer() else value


def rules(game: Mapping[str, Any]) -> str:
    """The game's rules, from a round's public information or the scenario's parameters."""
    ratio = game.get("ratio_text", game.get("ratio", "2/3"))
    return (
        f"You are playing a game. Every player picks a number between 0 and {game.get('max_value', 100)}. "
        f"The player whose number is closest to {ratio} of the average of all the numbers wins."
    )


class Asked(NamedTuple):
    """One question put to the model: the number read from its answer (None: none could be),
    the answer, the tokens spent, and why the call failed (None when it did not)."""

    number: float | None
    text: str
    tokens: int
    error: str | None = None


async def ask(
    pool: ModelPool,
    messages: list[dict[str, str]],
    params: LLMGuessParams,
    ceiling: float,
    deadline: float,
    seed: int | None = None,
) -> Asked:
    """The model's answer to a guesser's prompt, asked again for the number alone when none can
    be read and `params.extract` is on."""
    text, tokens = "", 0
    try:
        reply = await pool.chat(
            messages,
            deadline=deadline,
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            seed=seed,
        )
        text, tokens = reply.text, reply.tokens
        number = read_number(text, ceiling)
        if number is None and params.extract:
            extraction = await pool.chat(
                [{"role": "user", "content": EXTRACT + text}], deadline=deadline, max_tokens=16
            )
            tokens += extraction.tokens
            number = read_number(extraction.text, ceiling)
    except LLMError as e:
        return Asked(None, text, tokens, str(e))
    return Asked(number, text, tokens)


_UNASKED = Asked(None, "", 0, "not asked")


class LLMGuesser(Agent):
    """Plays the guessing game by asking a language model, in character."""

    __slots__ = ("answered", "memory", "summary")
    Params = LLMGuessParams
    learns = "its memory of the earlier rounds"
    # Prompts, replies in flight and memory of past rounds: several KB each.
    footprint = 16_000

    def __init__(self, profile: Profile, context: AgentContext) -> None:
        super().__init__(profile, context)
        self.memory: list[
            tuple[int, float | None, float | None, float | None]
        ] = []  # round, mine, mean, target
        self.summary: tuple[int, float, float | None, float | None] | None = (
            None  # answers, their sum, mean, target
        )
        self.answered: tuple[int, float | None] | None = None  # the last round's answer, awaiting its result

    # -- the prompt ----------------------------------------------------------------------------

    def recollection(self) -> tuple[str, str]:
        """What the agent remembers of earlier rounds, bounded whatever the run's length: the
        results every agent saw, and its own answers."""
        if self.summary is not None:
            count, total, mean, target = self.summary
            average = _show(total / count) if count else "nothing readable"
            return (
                f"Last round the average was {_show(mean)} and the target {_show(target)}.",
                f"Over {count} earlier rounds your answers averaged {average}.",
            )
        results = "\n".join(
            f"In round {r} the mean was {_show(mean)}, the target {_show(target)}."
            for r, _, mean, target in self.memory
        )
        answers = "\n".join(f"In round {r} you chose {_show(mine)}." for r, mine, _, _ in self.memory)
        return results, answers

    def _remember(self, public: Mapping[str, Any]) -> None:
        """File last round's answer with its result, now that the result is public."""
        if self.answered is None:
            return
        round, mine = self.answered
        last = public.get("last") or {}
        mean, target = last.get("avg"), last.get("win")
        params = self.context.params
        if params.memory == "summary":
            count, total, _, _ = self.summary or (0, 0.0, None, None)
            readable = mine is not None
            self.summary = (count + readable, total + (mine or 0.0), mean, target)
        elif params.remember:
            self.memory = [*self.memory, (round, mine, mean, target)][-params.remember :]
        self.answered = None

    def messages(self, observation: Observation) -> list[dict[str, str]]:
        """The round's prompt: the shared part (the same for every agent of the round with these
        params) before the agent's own, so a server's prefix cache serves the shared part."""
        public, params = observation.public, self.context.params
        results, answers = self.recollection()
        shared = [f"Round {observation.round} of {public.get('rounds', '?')}."]
        shared += [f"Announcement: {a}" for a in public.get("announcements", ())]
        shared += [results, USERS[params.prompt]]
        # The agent's own text, the commonest first: many agents answered alike, or were sent the
        # same message, so their prompts share a longer prefix; a persona is the agent's alone.
        own = [answers, *(f"A message for you: {m.content}" for m in observation.inbox)]
        own.append(self.introduction() if params.persona else "")
        return [
            {"role": "system", "content": rules(public) + SYSTEMS[params.system]},
            {"role": "user", "content": "\n".join(p for p in shared + own if p)},
        ]

    def introduction(self) -> str:
        """Who the model answers as (with `persona`): the agent's name and background."""
        return f"You are {self.profile.name}. {self.profile.background}"

    # -- a turn --------------------------------------------------------------------------------

    async def act(self, observation: Observation) -> Action:
        params = self.context.params
        self._remember(observation.public)
        pool: ModelPool = self.context.llm.model(params.model)
        deadline = time.monotonic() + params.turn_timeout
        asked = await ask(pool, self.messages(observation), params, observation.public["max_value"], deadline)
        self.answered = (observation.round, asked.number)
        if asked.error is not None:
            return Action(error=asked.error, tokens=asked.tokens)
        if asked.number is None:
            return Action({"invalid": asked.text[:200]}, tokens=asked.tokens)
        return Action(asked.number, tokens=asked.tokens)

    def get_state(self) -> Any:
        return (self.memory, self.summary, self.answered)

    def set_state(self, state: Any) -> None:
        self.memory, self.summary, self.answered = state

    # -- interviews ----------------------------------------------------------------------------

    @classmethod
    def interview(
        cls,
        params: LLMGuessParams,
        profile: Profile,
        game: Mapping[str, Any],
        answers: Sequence[str],
        question: str,
    ) -> list[dict[str, str]]:
        """The messages that let the model answer `question` in character, from the agent's
        background, the game (the scenario's parameters) and its recorded `answers` (newest last)."""
        return in_character(
            profile, rules(game), f"Your answers so far: {recent(answers, 'none yet')}.", question
        )


class _Archetype(LLMGuesser):
    """An archetype as the model sees it: a guesser whose profile is the archetype's categories
    and whose memory holds the archetype's rounds (the mean of its readable answers as its own)."""

    __slots__ = ()

    def introduction(self) -> str:
        traits = "; ".join(f"{name}: {value}" for name, value in self.profile.attributes.items())
        return f"You are a player with these traits: {traits}."


class LLMGuessArchetypes(Columns):
    """`llm_guess` with `archetypes`: a host's agents of the kind grouped by the categories of
    `archetypes.by`, the model asked `archetypes.samples` times per archetype and round, each
    member drawing its answer among its archetype's readable ones (agents/archetypes.py).

    Members with messages (a broadcast) answer through the calls of their archetype and those
    messages. A group with no readable answer gives its members an invalid answer (the first
    unreadable one), or their failure when every call failed. Tokens are in the run's usage,
    not on the members' actions; the calls not made are counted as the model's `saved`.
    """

    synchronous = False
    # ids, keys, archetype and draws: arrays of a few int64 per agent, and each round's answers.
    footprint = 200

    def __init__(self, ids: np.ndarray, context: AgentContext, profiles: ProfileColumns) -> None:
        super().__init__(ids, context, profiles)
        params: LLMGuessParams = context.params
        assert params.archetypes is not None
        self.grouping = Grouping(profiles, params.archetypes.by, len(ids))
        self.heads = [
            _Archetype(Profile(-1, "", "archetype", self.grouping.attributes(i), ""), context)
            for i in range(len(self.grouping))
        ]

    @classmethod
    def suits(cls, params: BaseModel) -> bool:
        return getattr(params, "archetypes", None) is not None

    async def act(
        self, round: int, public: Mapping[str, Any], inbox: Mapping[int, Sequence[Message]]
    ) -> Decisions:
        params: LLMGuessParams = self.context.params
        assert params.archetypes is not None
        samples = params.archetypes.samples
        pool: ModelPool = self.context.llm.model(params.model)
        deadline = time.monotonic() + params.turn_timeout
        for head in self.heads:
            head._remember(public)
        # A group per archetype, and per archetype and distinct messages of members that have any.
        group_of = self.grouping.member_of
        shared = Observation(round, public)
        groups: list[tuple[int, Observation]] = [(i, shared) for i in range(len(self.heads))]
        if inbox:
            group_of, groups = self._with_messages(round, public, inbox, groups)

        # As many workers as the model's endpoints take calls at once, each asking the next
        # (group, sample) in turn, rather than a task per call waiting in the pool's line: up to
        # 10,000,000 of them (archetypes × samples at most), and a few % more of the host's CPU.
        by_group = [[_UNASKED] * samples for _ in groups]  # in sample order: members draw by place
        prompts: list[list[dict[str, str]] | None] = [None] * len(groups)
        calls = itertools.product(range(len(groups)), range(samples))

        async def worker() -> None:
            for index, sample in calls:
                head, observation = groups[index]
                if (messages := prompts[index]) is None:
                    # Made when the group's turn comes: the first calls go out at once.
                    messages = prompts[index] = self.heads[head].messages(observation)
                seed = self.grouping.seed(self.context.seed, head, round, sample)
                by_group[index][sample] = await ask(
                    pool, messages, params, public["max_value"], deadline, seed
                )

        await _in_slices(worker() for _ in range(min(len(groups) * samples, pool.capacity)))
        readable = [[a.number for a in answers if a.number is not None] for answers in by_group]
        for index, head in enumerate(self.heads):  # the archetype remembers its own group's answers
            numbers = readable[index]
            head.answered = (round, sum(numbers) / len(numbers) if numbers else None)
        values, answered = choose(readable, group_of, self.draws(round))
        pool.usage.saved += len(self.ids) - len(groups) * samples
        if answered.all():
            return Decisions(values)
        payloads: list[Any] = values.tolist()
        errors = {}
        for position in np.flatnonzero(~answered).tolist():
            answers = by_group[int(group_of[position])]
            unreadable = next((a for a in answers if a.error is None), None)
            if unreadable is not None:
                payloads[position] = {"invalid": unreadable.text[:200]}
            else:
                payloads[position] = None
                errors[int(self.ids[position])] = f"every call of its archetype failed: {answers[0].error}"
        return Decisions(payloads, errors)

    def _with_messages(
        self,
        round: int,
        public: Mapping[str, Any],
        inbox: Mapping[int, Sequence[Message]],
        groups: list[tuple[int, Observation]],
    ) -> tuple[np.ndarray, list[tuple[int, Observation]]]:
        """The groups with those of the members that have messages: one per archetype and
        distinct messages (their contents, in order)."""
        recipients = np.fromiter((i for i, m in inbox.items() if m), np.int64)
        at = np.searchsorted(self.ids, recipients)
        mine = at < len(self.ids)
        mine[mine] = self.ids[at[mine]] == recipients[mine]
        group_of = self.grouping.member_of.copy()
        found: dict[tuple[int, tuple[str, ...]], int] = {}
        for agent_id, position in zip(recipients[mine].tolist(), at[mine].tolist(), strict=True):
            messages = tuple(inbox[agent_id])
            head = int(group_of[position])
            key = (head, tuple(str(m.content) for m in messages))
            if key not in found:
                found[key] = len(groups)
                groups.append((head, Observation(round, public, messages)))
            group_of[position] = found[key]
        return group_of, groups

    def get_state(self) -> dict[str, np.ndarray]:
        return {"memory": self.grouping.spread([head.get_state() for head in self.heads])}

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        for head, memory in zip(self.heads, self.grouping.gather(state["memory"]), strict=True):
            head.set_state(memory)

    def adopt(self, states: Sequence[Any]) -> None:
        """An older checkpoint's agents' memories: each archetype takes its first member's."""
        for head, memory in zip(self.heads, self.grouping.gather(states), strict=True):
            if memory is not None:
                head.set_state(memory)


LLMGuesser.columnar = LLMGuessArchetypes


async def _in_slices(calls: Iterable[Awaitable[_T]]) -> list[_T]:
    """`asyncio.gather(*calls)`, started `_LAUNCH` at a time with a yield between.

    aiohttp (on Python < 3.12) sends a request from a task of its own, which runs only after every
    task started before it: started all at once, a round's first wave of calls was held back
    until all had been set up (0.2-0.3 s of a 6 s round)."""
    tasks: list[asyncio.Future[_T]] = []
    pending = iter(calls)
    try:
        while started := [asyncio.ensure_future(call) for call in itertools.islice(pending, _LAUNCH)]:
            tasks += started
            await asyncio.sleep(0)
        return await asyncio.gather(*tasks)
    finally:
        for task in tasks:  # those still running when this was cancelled or one raised
            task.cancel()


def _show(value: float | None) -> str:
    if value is None:
        return "unknown"
    return f"{value:g}" if isinstance(value, int) else f"{value:.2f}"
