import asyncio
import gc

import pytest

from agents.core import Action, Agent, Intervention, Message, Observation
from agents.host import _GC_YOUNG, AgentHost
from tests.helpers import (
    Answers,
    Chatty,
    Gauge,
    Hangs,
    Raises,
    RaisesLater,
    ReportsError,
    ReturnsJunk,
    Waits,
    build,
)

PUBLIC = {"max_value": 100}


def host_of(kinds, params=None, timeout: float = 0.5) -> AgentHost:
    host = AgentHost(0, agent_timeout=timeout)
    host.add(build(kinds, params))
    return host


def step(host: AgentHost, round: int = 1, inbox=None):
    return asyncio.run(host.step(round, PUBLIC, inbox or {}))


def test_failures_are_isolated_and_counted():
    host = host_of([Answers, Raises, Hangs, RaisesLater, ReturnsJunk, ReportsError, Answers])
    batch = step(host)
    assert len(batch) == 7
    assert batch.errors == {
        1: "ValueError: boom",
        2: "TimeoutError: no action within 0.5 s",
        3: "RuntimeError: late boom",
        4: "TypeError: act() returned str, not an Action",
        5: "refused to answer",
    }
    assert all(0 <= batch.payloads[i] <= 100 for i in (0, 6))
    assert isinstance(batch.payloads, list)  # failures leave None payloads: no array
    assert batch.tokens == {5: 7}
    stats = host.stats()
    assert (stats.agents, stats.steps, stats.failures, stats.rounds) == (7, 7, 5, 1)


def test_waiting_agents_overlap():
    gauge = Gauge()
    host = host_of([Waits] * 2000, params=gauge, timeout=30)
    batch = step(host)
    assert batch.payloads.tolist() == list(range(2000))
    assert gauge.peak == 2000


def test_a_populated_host_collects_young_objects_less_often():
    gc.set_threshold(700, 10, 10)
    host_of([Answers] * 10)
    assert gc.get_threshold() == (_GC_YOUNG, 10, 10)
    assert gc.get_freeze_count() > 0


class Sends(Agent):
    """Sends a request from a task of its own, as aiohttp does: notes how many agents had
    started when it left."""

    __slots__ = ()

    async def act(self, observation: Observation) -> Action:
        started, sent = self.context.params
        started.append(self.id)

        async def send() -> None:
            sent.append(len(started))

        request = asyncio.ensure_future(send())
        await asyncio.sleep(0.01)
        await request
        return Action(self.id)


def test_the_first_waiting_agents_requests_leave_before_every_agent_has_started():
    started: list[int] = []
    sent: list[int] = []
    batch = step(host_of([Sends] * 1000, params=(started, sent), timeout=30))
    assert batch.payloads.tolist() == list(range(1000))
    assert sent[0] < 1000


def test_the_same_agents_draw_the_same_answers_each_time():
    first = step(host_of([Answers] * 50))
    again = step(host_of([Answers] * 50))
    other_round = step(host_of([Answers] * 50), round=2)
    assert first.payloads.tolist() == again.payloads.tolist()
    assert first.payloads.tolist() != other_round.payloads.tolist()


def test_inbox_messages_reach_their_agents():
    host = host_of([Chatty] * 3, params=3)
    note = Message(None, 1, "from the operator")
    batch = step(host, inbox={1: [note, note]})
    assert batch.payloads.tolist() == [0, 2, 0]
    assert [(m.sender, m.recipient) for m in batch.messages] == [(0, 1), (1, 2), (2, 0)]


def test_hosted_ids_must_follow_on():
    host = AgentHost(0, agent_timeout=1)
    host.add(build([Answers] * 2))
    with pytest.raises(ValueError, match="does not follow"):
        host.add(build([Answers], first=5))
    host.add(build([Answers], first=2))
    assert host.ids == range(0, 3)


def test_agent_state_round_trips(make_spec):
    spec = make_spec(**{"population.kinds": [{"kind": "adaptive", "share": 100}], "population.total": 20})
    host = AgentHost(0, agent_timeout=1)
    host.populate(spec.population, spec.seed, range(5, 15))
    assert not host.get_state()["columns"][0]["started"].any()
    step(host)
    state = host.get_state()
    assert state["agents"] == {}  # adaptive agents are held in columns: their state is arrays
    assert state["columns"][0]["ids"].tolist() == list(range(5, 15))
    assert state["columns"][0]["started"].all()
    fresh = AgentHost(0, agent_timeout=1)
    fresh.populate(spec.population, spec.seed, range(5, 15))
    fresh.set_state(state)
    last = {"win": 20}
    public = {**PUBLIC, "last": last}
    resumed = asyncio.run(fresh.step(2, public, {})).payloads
    assert resumed.tolist() == asyncio.run(host.step(2, public, {})).payloads.tolist()


def test_broadcasts_reach_the_agents_their_filter_matches():
    host = AgentHost(0, agent_timeout=1)
    people = build([Chatty] * 3, params=3)
    people[1] = Chatty(people[1].profile._replace(attributes={"gender": "female"}), people[1].context)
    host.add(people)
    to_women = Intervention("rates fall", where={"gender": "female"})
    to_all = Intervention("hello")
    batch = asyncio.run(host.step(1, PUBLIC, {}, [to_women, to_all]))
    assert batch.payloads.tolist() == [1, 2, 1]  # messages received
    assert Intervention("x", where={"gender": "male"}).reaches(people[1].profile) is False
