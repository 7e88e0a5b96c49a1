"""LLM archetypes: `llm_guess` agents grouped by attributes answer through `samples` calls per
archetype and round, against the stand-in server (which answers a prompt and seed alike)."""

import asyncio
import itertools
from typing import Any

import numpy as np
import pytest

from agents.admission import problems
from agents.core import ActionBatch, Message, Observation
from agents.host import AgentHost
from agents.kinds import llm_guess
from agents.kinds.llm_guess import LLMGuessArchetypes, read_number
from agents.llm import Reply
from agents.llm_stub import answer
from agents.placement import Node
from agents.scenarios.guess_two_thirds import GuessParams, GuessTwoThirds
from agents.spec import RunSpec, SpecError
from tests.conftest import spec_data

TOTAL = 1200
ATTRIBUTES = {
    "gender": {"female": 50, "male": 50},
    "age": {"young": 30, "middle": 40, "old": 30},
    "region": {"north": 50, "south": 50},
}
ARCHETYPES = 6  # gender × age


def archetype_spec(url: str, samples: int = 3, **changes: Any) -> RunSpec:
    params = {
        "model": "stub",
        "extract": False,
        "turn_timeout": 10,
        "archetypes": {"by": ["gender", "age"], "samples": samples},
    }
    data = spec_data(
        **{
            "population.total": TOTAL,
            "population.attributes": ATTRIBUTES,
            "population.kinds": [{"kind": "llm_guess", "share": 100, "params": params}],
            "llm": {"models": {"stub": {"endpoints": [{"url": url, "concurrency": 50}], "timeout": 5}}},
            "placement": {"hosts": 1, "agent_timeout": 20},
            **changes,
        }
    )
    return RunSpec.parse(data)


def hosts_of(spec: RunSpec, count: int) -> list[AgentHost]:
    cuts = np.linspace(0, TOTAL, count + 1).astype(int).tolist()
    hosts = []
    for index, (low, high) in enumerate(itertools.pairwise(cuts)):
        host = AgentHost(index, agent_timeout=20)
        host.populate(spec.population, spec.seed, range(low, high), spec.llm)
        hosts.append(host)
    return hosts


def columns_of(host: AgentHost) -> LLMGuessArchetypes:
    (_, columns, _), *others = host.groups
    assert not others
    assert not host.agents
    assert isinstance(columns, LLMGuessArchetypes)
    return columns


class Game:
    def __init__(self, hosts: list[AgentHost]) -> None:
        self.hosts = hosts
        self.scenario = GuessTwoThirds(GuessParams(), rounds=10, population=TOTAL)
        self.round = 0

    def public(self) -> dict[str, Any]:
        return dict(self.scenario.observe(self.round + 1).public)

    async def play(self, inbox: dict[int, list[Message]] | None = None) -> ActionBatch:
        self.round += 1
        public = self.scenario.observe(self.round).public
        batch = ActionBatch.concat([await h.step(self.round, public, inbox or {}) for h in self.hosts])
        self.scenario.apply(self.round, batch)
        return batch

    async def close(self) -> None:
        for host in self.hosts:
            await host.close()


async def test_calls_made_are_the_archetypes_on_each_host_times_the_samples(llm_stub):
    spec = archetype_spec(llm_stub.url, samples=4)
    game = Game(hosts_of(spec, 2))
    try:
        batch = await game.play()
        assert llm_stub.served.answered == 2 * ARCHETYPES * 4  # every archetype is on both hosts
        assert batch.usage["stub"]["calls"] == 2 * ARCHETYPES * 4
        assert batch.usage["stub"]["saved"] == TOTAL - 2 * ARCHETYPES * 4
        assert batch.failures == 0
        assert isinstance(batch.payloads, np.ndarray)
        # Members with messages answer through calls of their own: one group per archetype and
        # distinct messages.
        first = game.hosts[0].ids
        columns = columns_of(game.hosts[0])
        told = [i for i in first if columns.grouping.member_of[i - first.start] == 0][:3]
        inbox = {i: [Message(None, i, "The target is low this time.")] for i in told}
        before = llm_stub.served.answered
        await game.play(inbox)
        assert llm_stub.served.answered - before == (2 * ARCHETYPES + 1) * 4
    finally:
        await game.close()


async def test_each_member_answers_one_of_its_archetypes_readable_answers(llm_stub):
    spec = archetype_spec(llm_stub.url, samples=5)
    game = Game(hosts_of(spec, 1))
    try:
        columns = columns_of(game.hosts[0])
        observation = Observation(1, game.public())
        asked = [
            {
                read_number(
                    answer(head.messages(observation), columns.grouping.seed(spec.seed, h, 1, s)), 100
                )
                for s in range(5)
            }
            for h, head in enumerate(columns.heads)
        ]
        assert sum(len(a) for a in asked) > ARCHETYPES  # the samples' seeds make them differ
        payloads = np.asarray((await game.play()).payloads).tolist()
        for position, value in enumerate(payloads):
            assert value in asked[columns.grouping.member_of[position]]
        assert len(set(payloads)) > 1
        assert (
            "You are a player with these traits: gender: "
            in columns.heads[0].messages(observation)[1]["content"]
        )
    finally:
        await game.close()


async def test_runs_are_reproducible_on_any_number_of_hosts(llm_stub):
    spec = archetype_spec(llm_stub.url)
    games = [Game(hosts_of(spec, n)) for n in (1, 3, 1)]
    try:
        played = [[np.asarray((await g.play()).payloads).tolist() for _ in range(3)] for g in games]
    finally:
        for g in games:
            await g.close()
    assert played[0] == played[1] == played[2]
    assert played[0][0] != played[0][1]  # the archetypes remember: round 2 is not round 1


async def test_archetype_memory_survives_a_checkpoint_onto_other_hosts(llm_stub):
    spec = archetype_spec(llm_stub.url)
    uninterrupted, before = Game(hosts_of(spec, 2)), Game(hosts_of(spec, 2))
    after = Game(hosts_of(spec, 3))
    try:
        for _ in range(2):
            await uninterrupted.play()
            await before.play()
        parts = [h.get_state()["columns"][0] for h in before.hosts]
        joined = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        assert joined["memory"].dtype == object
        assert len(joined["memory"]) == TOTAL
        for host in after.hosts:
            low, high = np.searchsorted(joined["ids"], [host.ids.start, host.ids.stop])
            host.set_state({"columns": {0: {k: v[low:high] for k, v in joined.items()}}})
        after.round, after.scenario = before.round, before.scenario
        expected = np.asarray((await uninterrupted.play()).payloads).tolist()
        assert np.asarray((await after.play()).payloads).tolist() == expected
    finally:
        for g in (uninterrupted, before, after):
            await g.close()


async def played(game: Any, chat: Any, monkeypatch: Any) -> Any:
    """A round of `game`, its one host's model calls answered by `chat`."""
    assert game.hosts[0].llm is not None
    monkeypatch.setattr(game.hosts[0].llm.model("stub"), "chat", chat)
    try:
        return await game.play()
    finally:
        await game.close()


async def test_the_first_calls_go_out_before_every_archetypes_prompt_is_made(monkeypatch):
    """Calls are started a few archetypes at a time: a request that is sent from a task of its
    own (as aiohttp's is) leaves before the later archetypes are set up, not after all of them."""
    monkeypatch.setattr(llm_guess, "_LAUNCH", 2)
    made: list[int] = []
    sent: list[int] = []
    prompt = llm_guess._Archetype.messages

    def messages(self: llm_guess.LLMGuesser, observation: Observation) -> list[dict[str, str]]:
        made.append(1)
        return prompt(self, observation)

    async def send() -> None:
        sent.append(len(made))

    async def chat(_: Any, **__: Any) -> Reply:
        asyncio.get_running_loop().create_task(send())
        await asyncio.sleep(0)
        return Reply("7", 1, 1)

    monkeypatch.setattr(llm_guess._Archetype, "messages", messages)
    game = Game(hosts_of(archetype_spec("http://127.0.0.1:9/v1"), 1))
    batch = await played(game, chat, monkeypatch)
    assert batch.failures == 0
    assert len(made) == ARCHETYPES
    assert sent[0] < ARCHETYPES


async def test_no_more_calls_are_started_than_the_endpoints_take_at_once(monkeypatch):
    """The calls are made by as many workers as the pool's slots (50), not a task per call."""
    spec = archetype_spec("http://127.0.0.1:9/v1", samples=10)  # 60 calls
    game = Game(hosts_of(spec, 1))
    in_flight, peak, calls = 0, 0, 0

    async def chat(_: Any, **__: Any) -> Reply:
        nonlocal in_flight, peak, calls
        in_flight, calls = in_flight + 1, calls + 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return Reply("7", 1, 1)

    batch = await played(game, chat, monkeypatch)
    assert batch.failures == 0
    assert (calls, peak) == (ARCHETYPES * 10, 50)


async def test_unreadable_answers_are_invalid_and_failed_calls_fail_the_members(llm_stub):
    spec = archetype_spec(llm_stub.url, samples=2)
    game = Game(hosts_of(spec, 1))
    try:
        llm_stub.config.garbage_rate = 1.0
        batch = await game.play()
        assert batch.failures == 0
        assert all(p == {"invalid": "I would rather not say."} for p in batch.payloads)
        llm_stub.config.garbage_rate, llm_stub.config.error_rate = 0.0, 1.0
        batch = await game.play()
        assert batch.failures == TOTAL
        assert all("every call of its archetype failed" in e for e in batch.errors.values())
    finally:
        await game.close()


def test_archetypes_name_the_populations_attributes():
    with pytest.raises(SpecError) as raised:
        archetype_spec(
            "http://stub/v1", **{"population.kinds.0.params.archetypes": {"by": ["gender", "job"]}}
        )
    assert raised.value.by_field() == [
        (
            "population.kinds.0.params.archetypes.by",
            "'job' is not among population.attributes ['age', 'gender', 'region']",
        )
    ]
    many = {f"a{i}": {f"c{j}": 10 for j in range(10)} for i in range(6)}
    with pytest.raises(SpecError, match=r"archetypes.by: 1,000,000 archetypes"):
        archetype_spec(
            "http://stub/v1",
            **{"population.attributes": many, "population.kinds.0.params.archetypes": {"by": list(many)}},
        )
    with pytest.raises(SpecError, match=r"archetypes.samples: Input should be less than or equal to 100"):
        archetype_spec("http://stub/v1", samples=101)
    with pytest.raises(SpecError, match=r"population.kinds.0.params.archetypes: archetypes answer"):
        archetype_spec("http://stub/v1", **{"population.persona": {"model": "stub"}})


def test_admission_counts_archetype_agents_as_columns_and_others_as_objects():
    node = [Node("n", "10.0.0.1", cpus=2, gpus=0, memory_bytes=4 * 10**9)]
    big = {"population.total": 10_000_000}
    assert problems(archetype_spec("http://stub/v1", **big), node) == []
    per_agent = archetype_spec("http://stub/v1", **big, **{"population.kinds.0.params.archetypes": None})
    assert "population.total" in problems(per_agent, node)[0]
