"""Rule-based kinds for the social network scenario (`agents.scenarios.social`).

They read their feed: the message (sender None) whose content holds `posts`, `following` and
`active`, and in round 1, for the seeds, `news` (the story they break, which every kind posts).
They answer `{"act": "post", "text": ..., "stance": ...}`, `{"act": "repost", "of": author}` or
`{"act": "silent"}`, as objects or in columns (where the agents without a feed stay silent
without a call each). Both are stateless: what they do follows from the feed and their own random
draws of the round, so a run is the same on any number of hosts and after any resume.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from agents.columnar import Columns, Decisions
from agents.core import Action, Agent, Message, NoParams, Observation
from agents.rng import Draws, stream_key

__all__ = ["SILENT", "Threshold", "Voter", "feed_of"]

SILENT = Action({"act": "silent"})  # shared by every silent agent: payloads are read-only


def feed_of(observation: Observation) -> Mapping[str, Any] | None:
    """The agent's feed this round, or None when it has nothing to read."""
    for message in observation.inbox:
        content = message.content
        if message.sender is None and isinstance(content, Mapping) and "posts" in content:
            return content
    return None


class _Reader(Agent):
    """Posts the news it breaks; otherwise answers its feed as its kind does (silent without one)."""

    __slots__ = ()
    synchronous = True

    def decide(self, observation: Observation) -> Action:
        return self.answer(self.context.params, feed_of(observation), self.rng(observation.round))

    @classmethod
    def answer(cls, params: Any, feed: Mapping[str, Any] | None, draws: Draws) -> Action:
        """An agent's action on its `feed` (None: nothing to read), for objects and columns alike."""
        if feed is None:
            return SILENT
        if news := feed.get("news"):
            return Action({"act": "post", "text": news["text"], "stance": news.get("stance")})
        return cls.respond(params, feed, draws)

    @classmethod
    def respond(cls, params: Any, feed: Mapping[str, Any], draws: Draws) -> Action:
        raise NotImplementedError


class _ReaderColumns(Columns):
    """A reading kind in columns: the agents without a feed (most of them, most rounds) stay
    silent in one go; each agent with one answers it as the kind's object would, with the same
    draws."""

    kind: ClassVar[type[_Reader]]

    def decide(
        self, round: int, public: Mapping[str, Any], inbox: Mapping[int, Sequence[Message]]
    ) -> Decisions:
        payloads: list[Any] = [SILENT.payload] * len(self)
        if inbox:
            readers = np.fromiter(inbox, dtype=np.int64, count=len(inbox))
            at = np.searchsorted(self.ids, readers).clip(0, max(len(self) - 1, 0))
            mine = self.ids[at] == readers if len(self) else np.zeros(len(readers), dtype=bool)
            params, keys = self.context.params, self._keys
            for agent_id, position in zip(readers[mine].tolist(), at[mine].tolist(), strict=True):
                feed = feed_of(Observation(round, public, tuple(inbox[agent_id])))
                draws = Draws(stream_key(int(keys[position]), round))
                payloads[position] = self.kind.answer(params, feed, draws).payload
        return Decisions(payloads)


class ThresholdParams(NoParams):
    theta: float = Field(
        0.2, gt=0, le=1, description="share of followed accounts that must have posted before it reposts"
    )


class Threshold(_Reader):
    """A threshold (complex contagion) model: it reposts a post of its feed, drawn at random,
    when at least `theta` of the accounts it follows posted or reposted last round
    (`active / following >= theta`); otherwise it stays silent."""

    __slots__ = ()
    Params = ThresholdParams

    @classmethod
    def respond(cls, params: Any, feed: Mapping[str, Any], draws: Draws) -> Action:
        posts, following = feed["posts"], feed["following"]
        if posts and following and feed["active"] / following >= params.theta:
            return Action({"act": "repost", "of": draws.choice(posts)["author"]})
        return SILENT


class Voter(_Reader):
    """The voter model: it copies the stance (and the words) of a post of its feed, drawn at
    random, into a post of its own; silent when its feed is empty."""

    __slots__ = ()

    @classmethod
    def respond(cls, params: Any, feed: Mapping[str, Any], draws: Draws) -> Action:
        if not feed["posts"]:
            return SILENT
        post = draws.choice(feed["posts"])
        return Action({"act": "post", "text": post["text"], "stance": post["stance"]})


class ThresholdColumns(_ReaderColumns):
    kind = Threshold


class VoterColumns(_ReaderColumns):
    kind = Voter


Threshold.columnar = ThresholdColumns
Voter.columnar = VoterColumns
