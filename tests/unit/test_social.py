import pickle
from pathlib import Path

import numpy as np
import pytest

from agents.core import Action, ActionBatch, Agent, AgentContext, Message, Observation, Profile
from agents.kinds import KINDS
from agents.kinds.social import SILENT, Threshold, ThresholdParams, Voter
from agents.scenarios import SCENARIOS
from agents.scenarios.social import FollowGraph, SocialNetwork, SocialParams
from agents.spec import load_spec

EXAMPLE = Path(__file__).parents[2] / "examples" / "social-10k.yaml"

# A hand-built network of five agents. Agent 0 is followed by 1, 2 and 3; 1 by 0 and 3; 2 by 1
# and 3; nobody follows 3 or 4, and 4 follows nobody. Feeds list the most followed first: 0, 1, 2.
FOLLOWS = [[1], [0, 2], [0], [2, 1, 0], []]


def small(**params) -> SocialNetwork:
    return SocialNetwork.on_graph(FOLLOWS, {0: 1.0}, rounds=4, topic="bridge closes", **params)


def post(text: str, stance: float | None = None) -> dict:
    return {"act": "post", "text": text, "stance": stance}


def repost(of: int) -> dict:
    return {"act": "repost", "of": of}


QUIET = {"act": "silent"}


def feeds(net: SocialNetwork, round: int) -> dict[int, dict]:
    return {m.recipient: m.content for m in net.observe(round).messages}


def card(author: int, text: str, stance: float | None, origin: int | None = None) -> dict:
    c = {"author": author, "text": text, "stance": stance, "repost": origin is not None}
    if origin is not None:
        c["origin"] = origin
    return c


def kinds(name: str, params=None, agent_id: int = 0) -> Agent:
    cls = KINDS.get(name)
    return cls(Profile(agent_id, "a", name, {}, ""), AgentContext(seed=5, params=params))


def play(net: SocialNetwork, agents: list[Agent], rounds: range) -> list:
    """Rounds played in process the way a host plays them: each agent reads its feed."""
    results = []
    for r in rounds:
        observations = net.observe(r)
        inbox = {m.recipient: (m,) for m in observations.messages}
        payloads = [
            a.decide(Observation(r, observations.public, inbox.get(a.id, ()))).payload for a in agents
        ]
        result = net.apply(r, ActionBatch(range(len(agents)), payloads))
        results.append((result.round, result.stats, result.details))
    return results


def population(n: int, seed: int = 9) -> list[Agent]:
    """Alternating threshold (theta 0.2) and voter agents."""
    threshold = AgentContext(seed, ThresholdParams(theta=0.2))
    voter = AgentContext(seed, None)
    return [
        Threshold(Profile(i, "a", "threshold", {}, ""), threshold)
        if i % 2
        else Voter(Profile(i, "a", "voter", {}, ""), voter)
        for i in range(n)
    ]


# -- the graph -----------------------------------------------------------------------------------


def test_registered_under_their_names():
    assert SCENARIOS.get("social") is SocialNetwork
    assert KINDS.get("threshold") is Threshold
    assert KINDS.get("voter") is Voter


def test_an_explicit_graph_lists_the_most_followed_first():
    graph = FollowGraph.from_lists(FOLLOWS)
    assert graph.follower_counts().tolist() == [3, 2, 2, 0, 0]
    assert [graph.follows(i).tolist() for i in range(5)] == [[1], [0, 2], [0], [0, 1, 2], []]
    assert graph.indptr.dtype == np.int64
    assert graph.indices.dtype == np.int32
    assert graph.contains(np.array([3, 3, 0, 4]), np.array([2, 4, 1, 0])).tolist() == [
        True,
        False,
        True,
        False,
    ]


@pytest.mark.parametrize("bad", [[[0]], [[1], [5]], [[-1], []]])
def test_an_explicit_graph_refuses_self_follows_and_strangers(bad):
    with pytest.raises(ValueError, match="ids must be other agents"):
        FollowGraph.from_lists(bad)


@pytest.mark.parametrize("kind", ["random", "preferential"])
@pytest.mark.parametrize(("n", "k"), [(50, 7), (30, 29), (5000, 12)])  # dense draws, complete, sparse
def test_generated_graphs_follow_k_distinct_others(kind, n, k):
    graph = FollowGraph.generate(kind, n, k, np.random.default_rng(1))
    assert graph.edges == n * k
    rows = graph.indices.reshape(n, k)
    assert all(len(set(row)) == k for row in rows.tolist())
    assert not (rows == np.arange(n)[:, None]).any()


def test_preferential_attachment_makes_hubs():
    rng = np.random.default_rng(3)
    uniform = FollowGraph.generate("random", 20_000, 10, rng).follower_counts()
    preferential = FollowGraph.generate("preferential", 20_000, 10, rng).follower_counts()
    assert uniform.max() < 40  # Poisson(10)
    assert preferential.max() > 300  # about 10 × √20,000 / 2 for the most followed
    assert np.median(preferential) < np.median(uniform)


def test_the_graph_and_the_seeds_follow_from_the_seed():
    def build(seed: int, **params):
        return SocialNetwork(SocialParams(seeds=7, **params), rounds=2, population=3000, seed=seed)

    a, b, c = build(1), build(1), build(2)
    assert np.array_equal(a.graph.indices, b.graph.indices)
    assert np.array_equal(a.seed_ids, b.seed_ids)
    assert not np.array_equal(a.graph.indices, c.graph.indices)
    pinned = build(2, graph_seed=1)
    assert np.array_equal(pinned.graph.indices, a.graph.indices)
    assert a.observe(1) == b.observe(1)


def test_seeds_are_split_by_opposed_and_hubs_can_be_chosen():
    net = SocialNetwork(SocialParams(seeds=10, opposed=0.3, seeding="hubs"), rounds=1, population=500)
    assert sorted(net.seed_stances.tolist()) == [-1.0] * 3 + [1.0] * 7
    followers = net.graph.follower_counts()
    assert followers[net.seed_ids].min() >= np.sort(followers)[-10]


def test_density_and_seeds_are_checked_against_the_population():
    tiny = SocialNetwork(SocialParams(following=10, seeds=2), rounds=1, population=4)
    assert tiny.graph.following_counts().tolist() == [3, 3, 3, 3]  # everyone follows all others
    with pytest.raises(ValueError, match="seeds: 5 seeds for 4 agents"):
        SocialNetwork(SocialParams(seeds=5), rounds=1, population=4)
    with pytest.raises(ValueError, match="seeds must be agents"):
        SocialNetwork.on_graph(FOLLOWS, {7: 1.0})


def test_params_are_strict():
    with pytest.raises(ValueError, match="Extra inputs"):
        SocialParams(colour="red")
    with pytest.raises(ValueError, match="graph"):
        SocialParams(graph="small-world")


# -- rounds computed by hand ---------------------------------------------------------------------


def test_round_one_tells_the_seeds_the_news():
    observations = small().observe(1)
    assert observations.public["topic"] == "bridge closes"
    assert observations.public["round"] == 1
    assert observations.messages == (
        Message(
            None,
            0,
            {"posts": [], "following": 1, "active": 0, "news": {"text": "bridge closes", "stance": 1.0}},
        ),
    )


def test_three_rounds_by_hand():
    net = small(feed_size=1)

    # Round 1: the seed posts the news, agent 2 posts on its own, 3 answers junk, 4 fails.
    one = net.apply(
        1,
        ActionBatch(
            range(5),
            [post("bridge closes", 1.0), QUIET, post("  not true ", -1), "x", None],
            errors={4: "ValueError: boom"},
        ),
    )
    # seen: the seed 0, the posters 0 and 2, and their followers 1, 2, 3 (1, 3): 4 agents
    assert one.stats == {
        "seen": 4,
        "adopted": 2,
        "posts": 2,
        "reposts": 0,
        "silent": 3,
        "invalid": 1,
        "stance": 0.0,
        "polarization": 1.0,  # stances +1 and -1: split down the middle
    }
    assert [e["kind"] for e in one.details["events"]] == ["news_reached", "news_reached", "news_adopted"]
    assert [e["payload"]["share"] for e in one.details["events"]] == [0.1, 0.5, 0.1]
    assert one.details["graph"]["max_followers"] == 3
    assert one.details["stances"] == [1, 0, 0, 0, 0, 0, 0, 0, 0, 1]

    # Round 2: feeds hold round 1's posts, at most one each, the most followed author first.
    seed_post = card(0, "bridge closes", 1.0)  # agent 2's post is cut: 0 has more followers
    assert feeds(net, 2) == {
        1: {"posts": [seed_post], "following": 2, "active": 2},
        2: {"posts": [seed_post], "following": 1, "active": 1},
        3: {"posts": [seed_post], "following": 3, "active": 2},
    }
    two = net.apply(
        2,
        ActionBatch(
            range(5),
            [
                repost(2),  # 0 does not follow 2: invalid
                repost(2),  # 1 follows 2, whose post was cut from its feed: still valid
                repost(0),
                repost(4),  # 4 did not post: invalid
                post("my view", 0.5),
            ],
        ),
    )
    # stances now 0: +1, 1: -1 (reposted 2), 2: +1 (reposted 0), 4: +0.5
    # mean 0.375; polarization (1 + 1 + 1 + 0.25) / 4 - 0.375² = 0.671875
    assert two.stats == {
        "seen": 5,
        "adopted": 4,
        "posts": 1,
        "reposts": 2,
        "silent": 2,
        "invalid": 2,
        "stance": 0.375,
        "polarization": pytest.approx(0.671875),
    }
    events = two.details["events"]
    assert events[0] == {
        "kind": "first_repost",
        "payload": {"text": "first repost: agent 1 reposted agent 2", "agent": 1, "of": 2, "origin": 2},
    }
    assert [(e["kind"], e["payload"]["share"]) for e in events[1:]] == [
        ("news_reached", 0.9),
        ("news_adopted", 0.5),
    ]
    assert two.details["most_reposted"] == [{"author": 0, "reposts": 1}, {"author": 2, "reposts": 1}]
    assert two.details["examples"][:2] == [card(1, "not true", -1.0, 2), card(2, "bridge closes", 1.0, 0)]

    # Round 3: a repost of a repost carries the original; the others are silent.
    assert feeds(net, 3) == {
        0: {"posts": [card(1, "not true", -1.0, 2)], "following": 1, "active": 1},
        1: {"posts": [card(2, "bridge closes", 1.0, 0)], "following": 2, "active": 1},
        3: {"posts": [card(1, "not true", -1.0, 2)], "following": 3, "active": 2},
    }
    three = net.apply(3, ActionBatch(range(5), [repost(1), QUIET, QUIET, QUIET, QUIET]))
    # stances 0: -1, 1: -1, 2: +1, 4: +0.5; mean -0.125; polarization 3.25 / 4 - 0.125² = 0.796875
    assert three.stats["stance"] == -0.125
    assert three.stats["polarization"] == pytest.approx(0.796875)
    assert (three.stats["posts"], three.stats["reposts"], three.stats["silent"]) == (0, 1, 4)
    assert three.details["most_reposted"] == [{"author": 2, "reposts": 1}]
    assert three.details["events"] == []

    four = net.apply(4, ActionBatch(range(5), [QUIET] * 5))
    assert [e["kind"] for e in four.details["events"]] == ["went_quiet"]
    assert feeds(net, 5) == {}


def test_posts_are_trimmed_and_stances_clipped():
    net = small()
    result = net.apply(
        1,
        ActionBatch(
            range(5),
            [post("x" * 500, 7), post("y", "very"), post("   "), post("z", float("nan")), {"act": "dance"}],
        ),
    )
    assert (result.stats["posts"], result.stats["invalid"]) == (3, 2)
    assert net.stance[0] == 1.0
    assert np.isnan(net.stance[1])
    assert result.stats["polarization"] == 0.0  # one stance expressed
    assert len(result.details["examples"][0]["text"]) == 280
    assert result.details["examples"][1]["stance"] is None


def test_a_round_of_numbers_is_all_silent_and_nothing_expressed_means_no_polarization():
    result = small().apply(1, ActionBatch(range(5), np.arange(5)))
    assert (result.stats["silent"], result.stats["invalid"]) == (5, 5)
    assert result.stats["stance"] is None
    assert result.stats["polarization"] is None
    assert result.stats["seen"] == 1  # the seed alone


# -- the rule-based kinds ------------------------------------------------------------------------


def feed(posts: list[dict], following: int, active: int, **more) -> Observation:
    return Observation(
        2,
        {"topic": "t"},
        (Message(None, 0, {"posts": posts, "following": following, "active": active, **more}),),
    )


POSTS = [card(3, "yes", 1.0), card(5, "no", -1.0), card(8, "maybe", 0.25)]


def test_threshold_reposts_once_enough_of_its_followees_posted():
    agent = kinds("threshold", ThresholdParams(theta=0.5))
    assert agent.decide(feed(POSTS, following=6, active=2)) == SILENT  # 2 / 6 < 0.5
    action = agent.decide(feed(POSTS, following=6, active=3))  # 3 / 6 = 0.5
    assert action.payload["act"] == "repost"
    assert action.payload["of"] in {3, 5, 8}
    assert agent.decide(feed([], following=6, active=0)) == SILENT
    assert agent.decide(Observation(2, {})) == SILENT  # no feed at all


def test_voter_copies_the_stance_of_a_post_in_its_feed():
    agent = kinds("voter")
    action = agent.decide(feed(POSTS, following=4, active=3))
    assert action.payload["act"] == "post"
    assert (action.payload["text"], action.payload["stance"]) in {("yes", 1.0), ("no", -1.0), ("maybe", 0.25)}
    assert agent.decide(feed([], following=4, active=0)) == SILENT
    assert agent.decide(Observation(2, {})) == SILENT


@pytest.mark.parametrize(("name", "params"), [("threshold", ThresholdParams()), ("voter", None)])
def test_seeds_post_the_news_whatever_their_kind(name, params):
    news = feed([], following=3, active=0, news={"text": "bridge closes", "stance": -1.0})
    action = kinds(name, params).decide(news)
    assert action == Action({"act": "post", "text": "bridge closes", "stance": -1.0})


def test_kinds_draw_from_their_own_stream():
    draws = {kinds("voter", agent_id=i).decide(feed(POSTS, 3, 3)).payload["text"] for i in range(40)}
    assert draws == {"yes", "no", "maybe"}
    again = {kinds("voter", agent_id=7).decide(feed(POSTS, 3, 3)).payload["text"] for _ in range(5)}
    assert len(again) == 1


def test_an_injected_message_is_not_mistaken_for_the_feed():
    observation = Observation(2, {}, (Message(None, 0, "rates fall"),))
    assert kinds("voter").decide(observation) == SILENT


# -- whole runs ----------------------------------------------------------------------------------


def test_news_spreads_through_a_population_of_rule_based_agents():
    net = SocialNetwork(SocialParams(seeds=5, following=8), rounds=6, population=1000, seed=4)
    results = play(net, population(1000), range(1, 7))
    first = results[0][1]
    assert (first["posts"], first["reposts"], first["adopted"]) == (5, 0, 5)
    seen = [stats["seen"] for _, stats, _ in results]
    adopted = [stats["adopted"] for _, stats, _ in results]
    assert seen == sorted(seen)
    assert adopted == sorted(adopted)
    assert seen[-1] > 900
    assert all(0 <= stats["polarization"] <= 1 for _, stats, _ in results)
    kinds_of_events = [e["kind"] for _, _, details in results for e in details["events"]]
    assert kinds_of_events.count("news_reached") == 3


def test_a_resumed_run_continues_exactly():
    def fresh() -> SocialNetwork:
        return SocialNetwork(SocialParams(seeds=4, following=6), rounds=5, population=600, seed=8)

    agents = population(600)
    straight = fresh()
    play(straight, agents, range(1, 3))
    state = pickle.loads(pickle.dumps(straight.get_state()))  # as a checkpoint stores it
    resumed = fresh()
    resumed.set_state(state)
    assert resumed.observe(3) == straight.observe(3)
    assert play(resumed, agents, range(3, 6)) == play(straight, agents, range(3, 6))


def test_the_state_is_compact():
    net = SocialNetwork(SocialParams(seeds=4), rounds=3, population=10_000)
    play(net, population(10_000), range(1, 3))
    size = len(pickle.dumps(net.get_state()))
    # two bits and a float32 per agent, 16 bytes per post of the last round, and a little more
    assert size < 2 * 10_000 // 8 + 4 * 10_000 + 16 * len(net.last) + 2_000


def test_the_example_spec_validates():
    spec = load_spec(EXAMPLE)
    assert spec.scenario.name == "social"
    assert spec.population.total == 10_000
    assert {k.kind for k in spec.population.kinds} == {"threshold", "voter"}
