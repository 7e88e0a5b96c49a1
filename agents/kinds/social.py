"""Rule-based kinds for the social network scenario (`agents.scenarios.social`).

They read their feed: the message (sender None) whose content holds `posts`, `following` and
`active`, and in round 1, for the seeds, `news` (the story they break, which every kind posts).
They answer `{"act": "post", "text": ..., "stance": ...}`, `{"act": "repost", "of": author}` or
`{"act": "silent"}`. Both are stateless: what they do follows from the feed and their own random
draws of the round, so a run is the same on any number of hosts and after any resume.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from agents.core import Action, Agent, NoParams, Observation
from agents.rng import Draws

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
        feed = feed_of(observation)
        if feed is None:
            return SILENT
        if news := feed.get("news"):
            return Action({"act": "post", "text": news["text"], "stance": news.get("stance")})
        return self.respond(feed, self.rng(observation.round))

    def respond(self, feed: Mapping[str, Any], draws: Draws) -> Action:
        raise NotImplementedError


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

    def respond(self, feed: Mapping[str, Any], draws: Draws) -> Action:
        posts, following = feed["posts"], feed["following"]
        if posts and following and feed["active"] / following >= self.context.params.theta:
            return Action({"act": "repost", "of": draws.choice(posts)["author"]})
        return SILENT


class Voter(_Reader):
    """The voter model: it copies the stance (and the words) of a post of its feed, drawn at
    random, into a post of its own; silent when its feed is empty."""

    __slots__ = ()

    def respond(self, feed: Mapping[str, Any], draws: Draws) -> Action:
        if not feed["posts"]:
            return SILENT
        post = draws.choice(feed["posts"])
        return Action({"act": "post", "text": post["text"], "stance": post["stance"]})
