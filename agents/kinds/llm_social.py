"""A member of the social network scenario driven by a language model.

Each round it reads its feed (the latest posts of those it follows) and its model decides, in
character, whether to post, repost or stay silent. The prompt gives what every agent is told (the
network's topic, what to answer) before the agent's feed and persona, for the servers' prefix
caches. The answer is asked for as JSON and read robustly; one that cannot be read counts as
silence (an invalid act), and a call that fails after its retries makes the agent fail the round.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from agents.core import Action, Agent, NoParams, Observation, Profile
from agents.kinds.social import SILENT, feed_of
from agents.llm import LLMError
from agents.personas import in_character, recent

__all__ = ["LLMSocial", "LLMSocialParams", "read_act"]

_OBJECT = re.compile(r"\{.*\}", re.S)
ASK = (
    'Decide whether to post, repost or stay silent. Answer with JSON only: {"act": "post", "text": '
    '"...", "stance": -1 to 1} or {"act": "repost", "of": AUTHOR} or {"act": "silent"}.'
)


class LLMSocialParams(NoParams):
    model: str = Field(description="a model named in the spec's llm.models")
    turn_timeout: float = Field(60.0, gt=0, le=3600, description="seconds for the agent's whole turn")
    max_tokens: int | None = Field(None, ge=1, le=100_000, description="default: the model's")
    temperature: float | None = Field(None, ge=0, le=2, description="default: the model's")


def read_act(text: str, followed: Sequence[int]) -> dict[str, Any] | None:
    """The act in a model's answer, checked against what the scenario accepts, or None."""
    found = _OBJECT.search(text)
    try:
        act = json.loads(found.group(0)) if found else None
    except json.JSONDecodeError:
        return None
    if not isinstance(act, dict):
        return None
    match act.get("act"):
        case "silent":
            return {"act": "silent"}
        case "post" if isinstance(act.get("text"), str) and act["text"].strip():
            stance = act.get("stance")
            stance = max(-1.0, min(1.0, float(stance))) if isinstance(stance, int | float) else None
            return {"act": "post", "text": act["text"].strip()[:280], "stance": stance}
        case "repost" if act.get("of") in followed:
            return {"act": "repost", "of": act["of"]}
        case "repost" if followed:
            return {"act": "repost", "of": followed[0]}  # the model chose to repost; the first will do
    return None


class LLMSocial(Agent):
    """Reads its feed and lets its model decide what to do, in character."""

    __slots__ = ()
    Params = LLMSocialParams
    # Its prompt (persona and feed) and the reply in flight: several KB each; it keeps no memory.
    footprint = 16_000

    def messages(self, observation: Observation, feed: Mapping[str, Any]) -> list[dict[str, str]]:
        """The network and what to answer, the same for every agent, before the agent's own feed
        and persona, so a server's prefix cache serves the shared part."""
        system = (
            f"You use a social network where people talk about this: "
            f"{observation.public.get('topic', 'the news')}. {ASK}"
        )
        # The feed before the persona: those who heard the same news, or follow the same people,
        # share it; a persona is the agent's alone.
        if news := feed.get("news"):
            lines = [f"You have just heard this news: {news['text']}"]
        else:
            lines = [f"Latest posts of the {feed.get('following', 0)} people you follow:"]
            lines += [f"- {p['author']}: {p['text']}" for p in feed.get("posts", ())]
        lines.append(f"You are {self.profile.name}. {self.profile.background}")
        return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]

    async def act(self, observation: Observation) -> Action:
        feed = feed_of(observation)
        if feed is None:
            return SILENT
        params = self.context.params
        try:
            reply = await self.context.llm.model(params.model).chat(
                self.messages(observation, feed),
                deadline=time.monotonic() + params.turn_timeout,
                max_tokens=params.max_tokens,
                temperature=params.temperature,
            )
        except LLMError as e:
            return Action(error=str(e))
        followed = [p["author"] for p in feed.get("posts", ())]
        act = read_act(reply.text, followed)
        return Action(
            act if act is not None else {"act": "unreadable", "text": reply.text[:200]}, tokens=reply.tokens
        )

    @classmethod
    def interview(
        cls,
        params: LLMSocialParams,
        profile: Profile,
        game: Mapping[str, Any],
        answers: Sequence[str],
        question: str,
    ) -> list[dict[str, str]]:
        """The messages that let the model answer `question` in character."""
        setting = f"You are on a social network about {game.get('topic', 'the news')}."
        return in_character(
            profile, setting, f"Lately you did this: {recent(answers, 'nothing yet')}.", question
        )
