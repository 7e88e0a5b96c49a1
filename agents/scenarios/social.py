"""A social network in which a piece of news, and opinions about it, spread from post to post.

Every agent follows a few others on a follow graph generated from the seed. The run has one topic
(a line of news); a few agents, the seeds, break it in round 1, and from then on each round every
agent reads the latest posts of those it follows and posts, reposts one of them, or stays silent.
Every post is about the topic and may carry a stance on it in [-1, 1] (against .. for).

The round, step by step:

1. `observe(r)` sends each agent that has something to read one message (sender None) whose
   content is its feed, plain JSON-able data short enough for a language model's prompt::

       {"posts": [{"author": 17, "text": "...", "stance": 1.0, "repost": false},
                  {"author": 4, "text": "...", "stance": -1.0, "repost": true, "origin": 2}],
        "following": 10,   # how many accounts the agent follows
        "active": 3}       # how many of them posted or reposted in round r - 1

   `posts` are the posts of round r - 1 by the accounts it follows, the most followed first, at
   most `feed_size` of them (`active` counts them all). In round 1 the seeds' feeds also hold
   `"news": {"text": topic, "stance": 1.0 or -1.0}`, the story they break: the scenario tells
   them, and every kind posts it. The feed messages are shared, read-only data.
2. Agents answer with a payload: `{"act": "post", "text": "...", "stance": 0.5}` (the stance is
   optional), `{"act": "repost", "of": author_id}` (the post of round r - 1 by an account the
   agent follows; a repost carries the original's text, stance and origin), or
   `{"act": "silent"}`. Anything else is invalid and counts as silent, as does a failed action.
3. `apply(r, actions)` records the round's posts and updates, per agent: `seen` (the news reached
   it: it is a seed, or posted, or follows an account that posted, so the post is in its feed),
   `adopted` (it has posted or reposted at least once) and its stance (the last one it
   expressed).

Round statistics: `seen` and `adopted` (agents so far), `posts` and `reposts` (this round),
`silent` (the rest of the population, failed and invalid included), `invalid` (payloads not
understood, failures not counted), `stance` (the mean of the agents' latest stances) and
`polarization`: the variance of those stances (every agent that has expressed one, its latest),

    polarization = mean((s_i - mean(s))²)  over the agents i with a stance s_i in [-1, 1],

which lies in [0, 1]: 0 when they all agree, 1 when they are split half at -1 and half at +1;
e.g. stances (1, 1, -1) give mean 1/3 and polarization 8/9. Both are None until someone has
expressed a stance. Details: a few example posts, the most reposted authors, a histogram of the
stances, the graph's shape (round 1), and `events` for notable moments: `first_repost`,
`news_reached` and `news_adopted` (10 %, 50 %, 90 % of the agents) and `went_quiet` (a round
without posts after one with posts).

The graph is rebuilt from its seed rather than checkpointed; the state between rounds is a few
bits and a float per agent plus the last round's posts.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
from pydantic import Field

from agents.core import ActionBatch, Message, NoParams
from agents.scenarios.base import Observations, RoundResult, Scenario

__all__ = ["FollowGraph", "SocialNetwork", "SocialParams"]

MAX_TEXT = 280  # characters kept of a post
MILESTONES = (0.1, 0.5, 0.9)  # shares of the population whose reaching is an event
EXAMPLES = 5  # posts and reposted authors listed in a round's details
STANCE_BINS = 10  # the stance histogram's bins over [-1, 1]
_GRAPH_SALT = 0x534F4349414C  # keeps the graph's draws apart from every other use of the seed
# Up to this many agents, follow lists come from one population × population matrix of random
# keys (exact for any density); above it, from draws with redraws of the few collisions.
_DENSE_LIMIT = 2048


class SocialParams(NoParams):
    topic: str = Field(
        "The old river bridge will close for two years of repairs.",
        min_length=1,
        max_length=MAX_TEXT,
        description="the news that spreads, in a line",
    )
    graph: Literal["random", "preferential"] = Field(
        "preferential",
        description="random: everyone equally likely to be followed; preferential: a few accounts "
        "have many followers",
    )
    following: int = Field(10, ge=1, le=1000, description="accounts each agent follows (at most all others)")
    seeds: int = Field(10, ge=1, le=100_000_000, description="agents that break the news in round 1")
    seeding: Literal["random", "hubs"] = Field(
        "random", description="seeds drawn at random, or the most followed accounts"
    )
    opposed: float = Field(
        0.5, ge=0, le=1, description="share of the seeds against the news (stance -1); the others +1"
    )
    feed_size: int = Field(5, ge=1, le=100, description="posts an agent reads per round")
    graph_seed: int | None = Field(
        None, ge=0, lt=2**63, description="seed of the follow graph and the seeds; default the run's seed"
    )


def _row_sums(flags: np.ndarray, indptr: np.ndarray) -> np.ndarray:
    """How many of `flags` are set in each row of a CSR layout (rows may be empty)."""
    totals = np.zeros(len(flags) + 1, dtype=np.int64)
    np.cumsum(flags, out=totals[1:])
    return totals[indptr[1:]] - totals[indptr[:-1]]


@dataclass(frozen=True, slots=True, eq=False)
class FollowGraph:
    """Who follows whom, in compressed sparse rows: agent i follows the accounts
    `indices[indptr[i]:indptr[i + 1]]`, listed most followed first (ties by id); its feed shows
    their posts in that order.

    A million agents following ten each take 40 MB (int32 ids) plus 8 MB of row offsets.
    """

    indptr: np.ndarray  # int64, population + 1
    indices: np.ndarray  # int32, one per follow

    def __repr__(self) -> str:
        return f"FollowGraph(agents={self.population}, follows={self.edges})"

    @property
    def population(self) -> int:
        return len(self.indptr) - 1

    @property
    def edges(self) -> int:
        return len(self.indices)

    def follows(self, agent: int) -> np.ndarray:
        """The accounts `agent` follows, most followed first."""
        return self.indices[self.indptr[agent] : self.indptr[agent + 1]]

    def following_counts(self) -> np.ndarray:
        return np.diff(self.indptr)

    def follower_counts(self) -> np.ndarray:
        return np.bincount(self.indices, minlength=self.population)

    def contains(self, sources: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Whether each `sources[j]` follows `targets[j]`, for many pairs at once."""
        sources = np.asarray(sources, dtype=np.int64)
        starts = self.indptr[sources]
        counts = self.indptr[sources + 1] - starts
        bounds = np.zeros(len(sources) + 1, dtype=np.int64)
        np.cumsum(counts, out=bounds[1:])
        edges = np.arange(bounds[-1], dtype=np.int64) + np.repeat(starts - bounds[:-1], counts)
        matches = self.indices[edges] == np.repeat(np.asarray(targets, dtype=np.int64), counts)
        return _row_sums(matches, bounds) > 0

    @classmethod
    def from_lists(cls, follows: Sequence[Iterable[int]]) -> FollowGraph:
        """The graph in which agent i follows the accounts in `follows[i]`.

        Examples:
            >>> FollowGraph.from_lists([[1, 2], [2], []]).follows(0).tolist()
            [2, 1]
        """
        n = len(follows)
        rows = [sorted(set(map(int, row))) for row in follows]
        for agent, row in enumerate(rows):
            if any(not 0 <= other < n or other == agent for other in row):
                raise ValueError(f"agent {agent} follows {row}: ids must be other agents, 0..{n - 1}")
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(row) for row in rows], out=indptr[1:])
        indices = np.fromiter((x for row in rows for x in row), dtype=np.int32, count=int(indptr[-1]))
        return cls._ranked(indptr, indices)

    @classmethod
    def generate(
        cls,
        kind: Literal["random", "preferential"],
        population: int,
        following: int,
        rng: np.random.Generator,
    ) -> FollowGraph:
        """Each agent follows `min(following, population - 1)` distinct others.

        `random`: chosen uniformly. `preferential`: the static form of preferential attachment,
        with the Barabási–Albert degree profile: the agents stand in a seeded random order and
        the one at place r (1-based) is followed with probability ∝ √r − √(r − 1) ≈ 1/(2√r),
        so follower counts fall off like a power law and a few accounts have most followers.
        Unlike growing the graph one agent at a time, it takes a few vectorised draws at any
        size (a place is ⌈population × u²⌉ for u uniform in [0, 1)).
        """
        k = min(following, population - 1)
        order = rng.permutation(population) if kind == "preferential" else None
        targets = _draw_targets(population, k, order, rng)
        indptr = np.arange(population + 1, dtype=np.int64) * k
        return cls._ranked(indptr, targets.ravel())

    @classmethod
    def _ranked(cls, indptr: np.ndarray, indices: np.ndarray) -> FollowGraph:
        """The graph with each row ordered most followed first, ties by id."""
        n = len(indptr) - 1
        followers = np.bincount(indices, minlength=n)
        rank = np.empty(n, dtype=np.int64)
        rank[np.lexsort((np.arange(n), -followers))] = np.arange(n)
        counts = np.diff(indptr)
        if n and (counts == counts[0]).all():  # rows of one length: sort the rows of a matrix
            matrix = indices.reshape(n, int(counts[0]))
            indices = np.take_along_axis(matrix, np.argsort(rank[matrix], axis=1), axis=1).ravel()
        else:
            rows = np.repeat(np.arange(n, dtype=np.int64), counts)
            indices = indices[np.argsort(rows * n + rank[indices], kind="stable")]
        return cls(indptr, np.ascontiguousarray(indices, dtype=np.int32))


def _draw_targets(n: int, k: int, order: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """An n × k matrix: row i holds k distinct agents other than i, drawn without replacement,
    uniformly when `order` is None, else preferring the agents early in `order` (see
    `FollowGraph.generate`)."""
    if k <= 0:
        return np.empty((n, 0), dtype=np.int32)
    if n <= _DENSE_LIMIT:
        # Gumbel top-k: the k largest of log(weight) + Gumbel noise are a weighted draw without
        # replacement, for every row at once.
        keys = rng.gumbel(size=(n, n))
        if order is not None:
            places = np.arange(1, n + 1, dtype=np.float64)
            weights = np.empty(n)
            weights[order] = np.sqrt(places) - np.sqrt(places - 1)
            keys += np.log(weights)
        np.fill_diagonal(keys, -np.inf)
        return np.argpartition(-keys, k - 1, axis=1)[:, :k].astype(np.int32)
    # k ≤ 1000 < n / 2 here, so collisions (self-follows, repeats) are rare and soon redrawn.

    def draw(size: int | tuple[int, int]) -> np.ndarray:
        if order is None:
            return rng.integers(0, n, size=size, dtype=np.int64)
        u = rng.random(size)
        places = np.ceil(n * u * u).astype(np.int64)  # P(place <= r) = √(r / n)
        return order[np.clip(places, 1, n) - 1].astype(np.int64)

    targets = draw((n, k))
    rows = np.arange(n)  # the rows to check: all at first, then those with redraws
    while rows.size:
        block = targets[rows]
        bad = block == rows[:, None]
        # Within a row, every copy of an id after its first (in column order) is drawn again.
        columns = np.argsort(block, axis=1, kind="stable")
        ranked = np.take_along_axis(block, columns, axis=1)
        repeats = np.zeros_like(bad)
        np.put_along_axis(repeats, columns[:, 1:], ranked[:, 1:] == ranked[:, :-1], axis=1)
        bad |= repeats
        redo = bad.any(axis=1)
        rows, bad, block = rows[redo], bad[redo], block[redo]
        block[bad] = draw(int(bad.sum()))
        targets[rows] = block
    return targets.astype(np.int32)


@dataclass(slots=True)
class _Posts:
    """The posts of one round, one per author at most, in author order."""

    authors: np.ndarray  # int32, ascending
    stances: np.ndarray  # float32; NaN when the post expressed none
    origins: np.ndarray  # int32; -1 for an original post, else the author of the original
    texts: np.ndarray  # int32, into `library`
    library: list[str]

    @classmethod
    def none(cls) -> _Posts:
        empty = np.empty(0, dtype=np.int32)
        return cls(empty, np.empty(0, dtype=np.float32), empty, empty, [])

    def __len__(self) -> int:
        return len(self.authors)

    def find(self, authors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where each of `authors` is, and whether it posted at all."""
        at = np.searchsorted(self.authors, authors)
        found = at < len(self.authors)
        found[found] = self.authors[at[found]] == authors[found]
        return np.where(found, at, 0), found

    def cards(self, positions: slice = slice(None)) -> list[dict[str, Any]]:
        """The posts at `positions` as a feed shows them."""
        stances = np.round(self.stances[positions].astype(np.float64), 3)
        library = self.library
        cards: list[dict[str, Any]] = [
            {"author": author, "text": library[text], "stance": None if math.isnan(stance) else stance}
            for author, text, stance in zip(
                self.authors[positions].tolist(),
                self.texts[positions].tolist(),
                stances.tolist(),
                strict=True,
            )
        ]
        for card, origin in zip(cards, self.origins[positions].tolist(), strict=True):
            card["repost"] = origin >= 0
            if origin >= 0:
                card["origin"] = origin
        return cards

    def state(self) -> dict[str, Any]:
        return {
            "authors": self.authors,
            "stances": self.stances,
            "origins": self.origins,
            "texts": self.texts,
            "library": list(self.library),
        }


class _Written(NamedTuple):
    """The valid original posts of a round, in agent order."""

    authors: list[int]
    texts: list[str]
    stances: list[float]


class _Asked(NamedTuple):
    """The reposts agents asked for: agent `agents[j]` reposts the post of `of[j]`."""

    agents: list[int]
    of: list[int]


class _Reposts(NamedTuple):
    """The valid reposts of a round, in agent order, with what they carry of the original."""

    agents: np.ndarray
    of: np.ndarray
    origins: np.ndarray  # the author of the original post
    stances: np.ndarray
    texts: np.ndarray  # into the last round's library


@contextlib.contextmanager
def _bulk() -> Iterator[None]:
    """No garbage collection while a million feeds are built: none of them is cyclic, and every
    collection on the way would walk all those built before it (more than halves the time)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _stance(value: Any) -> float:
    """A payload's stance clipped to [-1, 1]; NaN when it is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        return math.nan
    value = float(value)
    return min(1.0, max(-1.0, value)) if math.isfinite(value) else math.nan


class SocialNetwork(Scenario):
    """News and opinions spreading over a follow graph; see the module's documentation.

    Args:
        params: the validated parameters.
        rounds: how many rounds the run asks for.
        population: how many agents take part.
        seed: the run seed, from which the graph and the seeds follow unless `graph_seed` is set.
        graph: a ready-made follow graph instead of a generated one (for tests and studies).
        seeds: the seeds and the stance of the news each breaks, instead of drawn ones.
    """

    Params = SocialParams
    stat_names = ("seen", "adopted", "posts", "reposts", "silent", "invalid", "stance", "polarization")
    params: SocialParams

    def __init__(
        self,
        params: SocialParams,
        *,
        rounds: int,
        population: int,
        seed: int = 0,
        graph: FollowGraph | None = None,
        seeds: Mapping[int, float] | None = None,
    ) -> None:
        super().__init__(params, rounds=rounds, population=population, seed=seed)
        if seeds is None:
            self.check(params, population=population)
        if graph is not None and graph.population != population:
            raise ValueError(f"the graph has {graph.population} agents, the run {population}")
        graph_seed = params.graph_seed if params.graph_seed is not None else seed
        rng = np.random.default_rng([graph_seed, _GRAPH_SALT])
        self._explicit_graph = graph is not None
        if graph is None:
            graph = FollowGraph.generate(params.graph, population, params.following, rng)
        self.graph = graph
        if seeds is None:
            seeds = self._draw_seeds(rng)
        if any(not 0 <= agent < population for agent in seeds):
            raise ValueError(f"seeds must be agents 0..{population - 1}, not {sorted(seeds)}")
        self.seed_ids = np.array(sorted(seeds), dtype=np.int32)
        self.seed_stances = np.array([_stance(seeds[i]) for i in self.seed_ids.tolist()], dtype=np.float32)
        self._following = self.graph.following_counts()
        self._reach: tuple[int, np.ndarray] | None = None  # (round, followees who posted, per agent)
        self._start()

    @classmethod
    def check(cls, params: SocialParams, *, population: int) -> None:
        if params.seeds > population:
            raise ValueError(f"seeds: {params.seeds} seeds for {population} agents")

    def __repr__(self) -> str:
        return f"SocialNetwork({self.graph!r}, seeds={len(self.seed_ids)}, rounds={self.rounds})"

    @classmethod
    def on_graph(
        cls, follows: Sequence[Iterable[int]], seeds: Mapping[int, float], *, rounds: int = 3, **params: Any
    ) -> SocialNetwork:
        """The scenario on an explicit graph: agent i follows `follows[i]`; `seeds` maps each
        seed to the stance of the news it breaks.

        Examples:
            >>> net = SocialNetwork.on_graph([[1], [0], [0, 1]], {0: 1.0}, feed_size=2)
            >>> [m.recipient for m in net.observe(1).messages]
            [0]
        """
        graph = FollowGraph.from_lists(follows)
        return cls(
            SocialParams(seeds=max(1, len(seeds)), **params),
            rounds=rounds,
            population=graph.population,
            graph=graph,
            seeds=seeds,
        )

    def _draw_seeds(self, rng: np.random.Generator) -> dict[int, float]:
        p, n = self.params, self.population
        if p.seeding == "hubs":
            followers = self.graph.follower_counts()
            chosen = np.lexsort((np.arange(n), -followers))[: p.seeds]
        else:
            chosen = rng.choice(n, size=p.seeds, replace=False)
        chosen = rng.permutation(chosen)  # who is against does not depend on rank or id
        against = math.floor(p.opposed * p.seeds + 0.5)
        return {int(agent): (-1.0 if i < against else 1.0) for i, agent in enumerate(chosen.tolist())}

    def _start(self) -> None:
        n = self.population
        self.round = 0
        self.seen = np.zeros(n, dtype=bool)
        self.seen[self.seed_ids] = True
        self.adopted = np.zeros(n, dtype=bool)
        self.stance = np.full(n, np.nan, dtype=np.float32)
        self.last = _Posts.none()
        self.reposts_so_far = 0
        self._reach = None

    # -- observe -----------------------------------------------------------------------------

    def observe(self, round: int) -> Observations:
        p = self.params
        public = {
            "scenario": "social",
            "topic": p.topic,
            "round": round,
            "rounds": self.rounds,
            "feed_size": p.feed_size,
            "acts": ["post", "repost", "silent"],
        }
        with _bulk():
            readers, feeds = self._feeds()
            if round == 1:
                merged = dict(zip(readers, feeds, strict=True))
                for agent, stance in zip(self.seed_ids.tolist(), self.seed_stances.tolist(), strict=True):
                    feed = merged.setdefault(
                        agent, {"posts": [], "following": int(self._following[agent]), "active": 0}
                    )
                    feed["news"] = {"text": p.topic, "stance": None if math.isnan(stance) else stance}
                readers = sorted(merged)
                feeds = [merged[agent] for agent in readers]
            messages = tuple(map(Message, itertools.repeat(None), readers, feeds))
        return Observations(public, messages)

    def _followees_posting(self) -> np.ndarray:
        """How many of the accounts each agent follows posted in the last round (cached)."""
        if self._reach is None or self._reach[0] != self.round:
            self._reach = (self.round, _row_sums(self._posted()[self.graph.indices], self.graph.indptr))
        return self._reach[1]

    def _posted(self) -> np.ndarray:
        """Whether each agent posted or reposted in the last round."""
        posted = np.zeros(self.population, dtype=bool)
        posted[self.last.authors] = True
        return posted

    def _feeds(self) -> tuple[list[int], list[dict[str, Any]]]:
        """The agents with something to read, in id order, and their feeds from the last
        round's posts."""
        last = self.last
        if not len(last):
            return [], []
        graph, size = self.graph, self.params.feed_size
        active = self._followees_posting()
        readers = np.flatnonzero(active)
        counts = active[readers]
        # The posting followees' edges in row order; each row lists the most followed first, so
        # the first `feed_size` edges of a row are the posts its feed shows.
        edges = np.flatnonzero(self._posted()[graph.indices])
        rank = np.arange(len(edges)) - np.repeat(np.cumsum(counts) - counts, counts)
        at = np.zeros(self.population, dtype=np.int32)
        at[last.authors] = np.arange(len(last), dtype=np.int32)
        shown = at[graph.indices[edges[rank < size]]]
        # One card per post, shared by every feed that shows it.
        cards = list(map(last.cards().__getitem__, shown.tolist()))
        ends = np.cumsum(np.minimum(counts, size)).tolist()
        feeds = [
            {"posts": cards[begin:end], "following": following, "active": a}
            for begin, end, following, a in zip(
                [0, *ends[:-1]], ends, self._following[readers].tolist(), counts.tolist(), strict=True
            )
        ]
        return readers.tolist(), feeds

    # -- apply -------------------------------------------------------------------------------

    def apply(self, round: int, actions: ActionBatch) -> RoundResult:
        # Milestones count from nothing at the start, so the seeds alone can pass the first.
        seen_before = int(self.seen.sum()) if self.round else 0
        adopted_before, posts_before = int(self.adopted.sum()), len(self.last)
        posts, asked, invalid = self._read(actions)
        reposts = self._valid_reposts(asked)
        invalid += len(asked.agents) - len(reposts.agents)
        first_repost = None
        if len(reposts.agents) and not self.reposts_so_far:
            first_repost = {
                "agent": int(reposts.agents[0]),
                "of": int(reposts.of[0]),
                "origin": int(reposts.origins[0]),
            }
        self.reposts_so_far += len(reposts.agents)
        new = self._merge(posts, reposts)
        expressed = ~np.isnan(new.stances)
        self.stance[new.authors[expressed]] = new.stances[expressed]
        self.adopted[new.authors] = True
        self.seen[new.authors] = True
        self.last, self.round = new, round
        self.seen |= self._followees_posting() > 0

        stances = self.stance[~np.isnan(self.stance)].astype(np.float64)
        mean = float(stances.mean()) if stances.size else None
        polarization = None if mean is None else min(1.0, float(((stances - mean) ** 2).mean()))
        stats: dict[str, float | int | None] = {
            "seen": int(self.seen.sum()),
            "adopted": int(self.adopted.sum()),
            "posts": len(posts.authors),
            "reposts": len(reposts.agents),
            "silent": self.population - len(new),
            "invalid": invalid,
            "stance": mean,
            "polarization": polarization,
        }
        details: dict[str, Any] = {
            "examples": new.cards(slice(EXAMPLES)),
            "most_reposted": self._most_reposted(new),
            "stances": np.histogram(stances, bins=STANCE_BINS, range=(-1, 1))[0].tolist(),
            "events": self._events(stats, seen_before, adopted_before, posts_before, first_repost),
        }
        if round == 1:
            details["graph"] = self._graph_summary()
        return RoundResult(round, stats, details)

    def _read(self, actions: ActionBatch) -> tuple[_Written, _Asked, int]:
        """The valid posts in `actions`, the reposts asked for, and how many payloads were not
        understood. Failed agents are silent."""
        n, first, errors = self.population, actions.ids.start, actions.errors
        posts, asked = _Written([], [], []), _Asked([], [])
        invalid = 0
        payloads = actions.payloads
        if isinstance(payloads, np.ndarray):  # all numbers: nothing a social network understands
            return posts, asked, len(payloads) - len(errors)
        for agent, payload in enumerate(payloads, first):
            if errors and agent in errors:
                continue
            if type(payload) is dict:
                act = payload.get("act")
                if act == "silent":
                    continue
                if act == "post":
                    text = payload.get("text")
                    if isinstance(text, str) and (text := text.strip()):
                        posts.authors.append(agent)
                        posts.texts.append(text[:MAX_TEXT])
                        posts.stances.append(_stance(payload.get("stance")))
                        continue
                elif act == "repost":
                    of = payload.get("of")
                    if isinstance(of, int | np.integer) and not isinstance(of, bool) and 0 <= of < n:
                        asked.agents.append(agent)
                        asked.of.append(int(of))
                        continue
            invalid += 1
        return posts, asked, invalid

    def _valid_reposts(self, asked: _Asked) -> _Reposts:
        """The reposts of a post of the last round by an account the reposter follows."""
        agents = np.array(asked.agents, dtype=np.int64)
        of = np.array(asked.of, dtype=np.int64)
        at, posted = self.last.find(of)
        valid = posted & self.graph.contains(agents, of)
        at, agents, of = at[valid], agents[valid], of[valid]
        origins = self.last.origins[at].astype(np.int64)
        return _Reposts(
            agents=agents,
            of=of,
            origins=np.where(origins >= 0, origins, of),
            stances=self.last.stances[at],
            texts=self.last.texts[at],
        )

    def _merge(self, posts: _Written, reposts: _Reposts) -> _Posts:
        """A round's posts and valid reposts as `_Posts`, each text stored once."""
        library: dict[str, int] = {}
        text_ids = [library.setdefault(t, len(library)) for t in posts.texts]
        old = self.last.library
        text_ids += [library.setdefault(old[i], len(library)) for i in reposts.texts.tolist()]
        authors = np.concatenate([np.array(posts.authors, dtype=np.int64), reposts.agents])
        origins = np.concatenate([np.full(len(posts.authors), -1, dtype=np.int64), reposts.origins])
        stances = np.concatenate([np.array(posts.stances, dtype=np.float32), reposts.stances])
        order = np.argsort(authors, kind="stable")
        return _Posts(
            authors=authors[order].astype(np.int32),
            stances=stances[order],
            origins=origins[order].astype(np.int32),
            texts=np.array(text_ids, dtype=np.int32)[order],
            library=list(library),
        )

    # -- results -----------------------------------------------------------------------------

    def _events(
        self,
        stats: Mapping[str, Any],
        seen_before: int,
        adopted_before: int,
        posts_before: int,
        first_repost: dict[str, int] | None,
    ) -> list[dict[str, Any]]:
        n = self.population
        events = []
        if first_repost is not None:
            text = f"first repost: agent {first_repost['agent']} reposted agent {first_repost['of']}"
            events.append({"kind": "first_repost", "payload": {"text": text, **first_repost}})
        before = {"seen": seen_before, "adopted": adopted_before}
        for measure, kind, verb in (("seen", "news_reached", "seen"), ("adopted", "news_adopted", "shared")):
            for share in MILESTONES:
                if before[measure] < share * n <= stats[measure]:
                    text = f"{share:.0%} of the agents have {verb} the news ({stats[measure]:,})"
                    payload = {"text": text, "share": share, measure: stats[measure], "agents": n}
                    events.append({"kind": kind, "payload": payload})
        if posts_before and not stats["posts"] + stats["reposts"]:
            text = f"nobody posted, after {posts_before:,} posts the round before"
            events.append({"kind": "went_quiet", "payload": {"text": text, "posts_before": posts_before}})
        return events

    @staticmethod
    def _most_reposted(posts: _Posts) -> list[dict[str, int]]:
        origins = posts.origins[posts.origins >= 0]
        if not origins.size:
            return []
        authors, counts = np.unique(origins, return_counts=True)
        top = np.lexsort((authors, -counts))[:EXAMPLES]
        return [{"author": int(authors[i]), "reposts": int(counts[i])} for i in top]

    def _graph_summary(self) -> dict[str, Any]:
        followers = self.graph.follower_counts()
        return {
            "kind": "given" if self._explicit_graph else self.params.graph,
            "agents": self.population,
            "follows": self.graph.edges,
            "max_followers": int(followers.max()) if followers.size else 0,
            "median_followers": float(np.median(followers)) if followers.size else 0.0,
            "seeds": self.seed_ids[:20].tolist(),
        }

    # -- checkpoints -------------------------------------------------------------------------

    def get_state(self) -> Any:
        """Who has seen and adopted the news (bits), every stance (float32), the last round's
        posts; the graph and the seeds are rebuilt from the seed."""
        return {
            "round": self.round,
            "seen": np.packbits(self.seen),
            "adopted": np.packbits(self.adopted),
            "stance": self.stance.copy(),
            "last": self.last.state(),
            "reposts_so_far": self.reposts_so_far,
        }

    def set_state(self, state: Any) -> None:
        n = self.population
        self.round = state["round"]
        self.seen = np.unpackbits(state["seen"], count=n).astype(bool)
        self.adopted = np.unpackbits(state["adopted"], count=n).astype(bool)
        self.stance = np.array(state["stance"], dtype=np.float32)
        last = state["last"]
        self.last = _Posts(
            np.asarray(last["authors"], dtype=np.int32),
            np.asarray(last["stances"], dtype=np.float32),
            np.asarray(last["origins"], dtype=np.int32),
            np.asarray(last["texts"], dtype=np.int32),
            list(last["library"]),
        )
        self.reposts_so_far = state["reposts_so_far"]
        self._reach = None
