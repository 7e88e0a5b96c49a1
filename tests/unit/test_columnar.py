"""Columnar kinds against their per-object agents: the same answers, the same state and the same
reach, on hosts that hold kinds in columns, as objects, or both."""

import asyncio
import time

import numpy as np
import pytest

from agents.columnar import Columns, Decisions
from agents.core import ActionBatch, AgentContext, Intervention
from agents.host import AgentHost
from agents.kinds import KINDS
from agents.population import Population
from agents.scenarios.guess_two_thirds import GuessParams, GuessTwoThirds

GUESSERS = [
    {"kind": "uniform", "share": 20},
    {"kind": "level_k", "share": 15, "params": {"k": 0}},
    {"kind": "level_k", "share": 15, "params": {"k": 1}},
    {"kind": "level_k", "share": 15, "params": {"k": 2}},
    {"kind": "level_k", "share": 15, "params": {"k": 3}},
    {"kind": "adaptive", "share": 20, "params": {"rate": 0.3}},
]
TOTAL = 3000


def columns_host(spec, ids: range = range(TOTAL)) -> AgentHost:
    host = AgentHost(0, agent_timeout=5)
    host.populate(spec.population, spec.seed, ids)
    return host


def objects_host(spec, ids: range = range(TOTAL)) -> AgentHost:
    """The same agents as objects, one `decide` call each (as before kinds had columns)."""
    host = AgentHost(0, agent_timeout=5)
    host.add(Population(spec.population, spec.seed).agents(ids))
    return host


class Game:
    """The guess-2/3 game played by hosts of adjacent ranges, round after round."""

    def __init__(self) -> None:
        self.scenario = GuessTwoThirds(GuessParams(), rounds=100, population=TOTAL)
        self.round = 0

    def play(self, hosts: list[AgentHost], rounds: int) -> list[list]:
        """The payloads of each of the next `rounds` rounds."""
        seen = []
        for _ in range(rounds):
            self.round += 1
            public = self.scenario.observe(self.round).public
            batch = ActionBatch.concat([asyncio.run(h.step(self.round, public, {})) for h in hosts])
            self.scenario.apply(self.round, batch)
            seen.append(np.asarray(batch.payloads).tolist())
        return seen

    def fork(self) -> "Game":
        other = Game()
        other.scenario.set_state(self.scenario.get_state())
        other.round = self.round
        return other


@pytest.fixture
def guessers(make_spec):
    return make_spec(**{"population.kinds": GUESSERS, "population.total": TOTAL})


def test_every_guessing_kind_has_columns():
    for name in ("uniform", "level_k", "adaptive"):
        assert KINDS.get(name).columnar is not None, name


def test_columns_answer_exactly_as_the_objects(guessers):
    columns = columns_host(guessers)
    assert columns.agents == []  # no object, no profile
    assert len(columns.groups) == len(GUESSERS)
    answers = Game().play([columns], 6)
    assert answers == Game().play([objects_host(guessers)], 6)
    assert len({tuple(a) for a in answers}) == 6  # the rounds differ: adaptive agents move


def test_columns_split_over_hosts_answer_as_one_host(guessers):
    split = [columns_host(guessers, r) for r in (range(0, 1000), range(1000, 1700), range(1700, TOTAL))]
    assert Game().play(split, 4) == Game().play([columns_host(guessers)], 4)


def test_a_checkpoint_of_columns_or_of_objects_goes_on_as_the_run(guessers):
    """Columns restore their own arrays, and the states of the objects they were before the kind
    had columns (an old checkpoint): both go on exactly as the run that was not interrupted."""
    game, going = Game(), columns_host(guessers)
    game.play([going], 3)
    old = objects_host(guessers)
    Game().play([old], 3)
    from_columns, from_objects = columns_host(guessers), columns_host(guessers)
    from_columns.set_state(going.get_state())
    from_objects.set_state(old.get_state())
    forks = game.fork(), game.fork()
    expected = game.play([going], 3)
    assert forks[0].play([from_columns], 3) == expected
    assert forks[1].play([from_objects], 3) == expected


def test_a_host_mixes_columns_and_objects(make_spec):
    """`probe` has no columns: its agents stay objects beside the columns, in id order."""
    kinds = [{"kind": "probe", "share": 35, "params": {"delay": 0}}, *GUESSERS[2:]]
    spec = make_spec(**{"population.kinds": kinds, "population.total": TOTAL})
    mixed = columns_host(spec)
    assert len(mixed.agents) == 1050
    assert len(mixed.groups) == 4
    assert Game().play([mixed], 4) == Game().play([objects_host(spec)], 4)


class Broken(Columns):
    def decide(self, round, public, inbox):
        raise ZeroDivisionError("bad kind")


def test_a_failing_kind_fails_its_own_agents_only(guessers):
    host = columns_host(guessers)
    index, columns, offsets = host.groups[0]
    host.groups[0] = (index, Broken(columns.ids, AgentContext(seed=1), columns.profiles), offsets)
    batch = asyncio.run(
        host.step(1, GuessTwoThirds(GuessParams(), rounds=1, population=TOTAL).observe(1).public, {})
    )
    assert sorted(batch.errors) == columns.ids.tolist()
    assert set(batch.errors.values()) == {"ZeroDivisionError: bad kind"}
    others = np.setdiff1d(np.arange(TOTAL), columns.ids)
    assert all(isinstance(batch.payloads[i], int) for i in others.tolist())


def test_broadcasts_reach_columns_by_their_attributes(make_spec):
    spec = make_spec(
        **{
            "population.kinds": GUESSERS,
            "population.total": TOTAL,
            "population.attributes": {"gender": {"female": 40, "male": 60}},
        }
    )
    public = GuessTwoThirds(GuessParams(), rounds=1, population=TOTAL).observe(1).public
    casts = [
        Intervention("rates fall", where={"gender": "female"}),
        Intervention("hi"),
        Intervention("x", {"job": "y"}),
    ]
    batch = asyncio.run(columns_host(spec).step(1, public, {}, casts))
    assert (
        batch.reached
        == asyncio.run(objects_host(spec).step(1, public, {}, casts)).reached
        == [1200, TOTAL, 0]
    )


def test_columns_are_counted_smaller_when_a_run_is_admitted(make_spec):
    from agents.admission import problems
    from agents.placement import Node

    node = Node("n", "h", cpus=2, gpus=0, memory_bytes=2 * 10**9)
    big = {"population.total": 5_000_000, "placement": {"hosts": 2}}
    assert problems(make_spec(**big, **{"population.kinds": GUESSERS}), [node]) == []
    objects = [{"kind": "probe", "share": 100}]
    assert "population.total" in problems(make_spec(**big, **{"population.kinds": objects}), [node])[0]


class Waiting(Columns):
    """Waits `params` seconds (as a model call would), then each agent answers its id."""

    synchronous = False

    async def act(self, round, public, inbox):
        await asyncio.sleep(self.context.params)
        return Decisions(self.ids % 7)


def test_waiting_columns_are_awaited_beside_the_objects_and_timed_out(guessers):
    host = columns_host(guessers)
    public = GuessTwoThirds(GuessParams(), rounds=1, population=TOTAL).observe(1).public
    (index, uniform, offsets), (_, level0, offsets0) = host.groups[:2]
    host.groups[0] = (
        index,
        Waiting(uniform.ids, AgentContext(seed=1, params=0.05), uniform.profiles),
        offsets,
    )
    host.groups[1] = (index, Waiting(level0.ids, AgentContext(seed=1, params=60), level0.profiles), offsets0)
    host.agent_timeout = 0.5
    started = time.perf_counter()
    batch = asyncio.run(host.step(1, public, {}))
    assert time.perf_counter() - started < 5
    assert [batch.payloads[i] for i in offsets.tolist()] == (uniform.ids % 7).tolist()
    assert sorted(batch.errors) == level0.ids.tolist()  # the slow kind failed, alone
    assert set(batch.errors.values()) == {"TimeoutError: no action within the round's time"}


class Short(Columns):
    """Gives one payload too few: a bug that would shift every later agent's answer."""

    def decide(self, round, public, inbox):
        return Decisions(self.ids[1:] % 7)


class ShortWaiting(Waiting):
    async def act(self, round, public, inbox):
        return Decisions([*(self.ids % 7).tolist(), 0])


def test_a_kind_that_gives_the_wrong_number_of_payloads_fails_its_own_agents(guessers):
    host = columns_host(guessers)
    (index, uniform, offsets), (_, level0, offsets0) = host.groups[:2]
    host.groups[0] = (index, Short(uniform.ids, AgentContext(seed=1), uniform.profiles), offsets)
    host.groups[1] = (
        index,
        ShortWaiting(level0.ids, AgentContext(seed=1, params=0), level0.profiles),
        offsets0,
    )
    batch = asyncio.run(
        host.step(1, GuessTwoThirds(GuessParams(), rounds=1, population=TOTAL).observe(1).public, {})
    )
    n, m = len(uniform), len(level0)
    assert {batch.errors[i] for i in uniform.ids.tolist()} == {
        f"ValueError: decide() gave {n - 1} payloads for {n} agents"
    }
    assert {batch.errors[i] for i in level0.ids.tolist()} == {
        f"ValueError: act() gave {m + 1} payloads for {m} agents"
    }
    assert all(batch.payloads[i] is None for i in [*offsets.tolist(), *offsets0.tolist()])
    others = np.setdiff1d(np.arange(TOTAL), np.concatenate([uniform.ids, level0.ids]))
    assert len(batch.errors) == n + m
    assert all(isinstance(batch.payloads[i], int) for i in others.tolist())


def test_columns_read_their_agents_attributes_and_profiles(make_spec):
    spec = make_spec(**{"population.kinds": GUESSERS, "population.total": TOTAL})
    host = columns_host(spec, range(1000, 2000))
    everyone = Population(spec.population, spec.seed).profiles(range(TOTAL))
    for _, columns, _ in host.groups:
        categories, codes = columns.profiles.attribute("gender")
        assert [categories[c] for c in codes.tolist()] == [
            everyone[i].attributes["gender"] for i in columns.ids
        ]
        assert columns.profiles.profiles(np.array([0, 2])) == [
            everyone[columns.ids[0]],
            everyone[columns.ids[2]],
        ]
        assert columns.profiles.attribute("height")[0] == []


def social_rounds(spec, hosts: list[AgentHost], rounds: int) -> list[list]:
    """`rounds` rounds of the social network over `hosts` (adjacent ranges): each round's payloads."""
    from collections import defaultdict

    from agents.scenarios import SCENARIOS

    cls = SCENARIOS.get("social")
    scenario = cls(
        cls.Params.model_validate(spec.scenario.params),
        rounds=rounds,
        population=spec.population.total,
        seed=spec.seed,
    )
    seen = []
    for round in range(1, rounds + 1):
        observed = scenario.observe(round)
        inbox = defaultdict(list)
        for message in observed.messages:
            inbox[message.recipient].append(message)
        batch = ActionBatch.concat([asyncio.run(h.step(round, observed.public, inbox)) for h in hosts])
        scenario.apply(round, batch)
        seen.append(list(batch.payloads))
    return seen


def test_social_kinds_in_columns_act_as_their_objects(make_spec):
    from tests.conftest import SOCIAL

    spec = make_spec(**SOCIAL)
    total = spec.population.total
    columns = [columns_host(spec, range(0, 700)), columns_host(spec, range(700, total))]
    assert all(h.agents == [] for h in columns)
    rounds = social_rounds(spec, columns, 5)
    assert rounds == social_rounds(spec, [objects_host(spec, range(total))], 5)
    acts = [p["act"] for p in rounds[-1]]
    assert {"post", "repost", "silent"} <= set(acts)  # the news spread: every kind of answer
