"""A run's actions stored in chunks and read back by everything that reads them (an agent's
answers, a survey's recent answers, the failed filter, the stats by kind, the exports), compared
with what the engine produced: the batches of a host stepping the run's agents."""

from __future__ import annotations

import csv
import json
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from agents.core import Action, ActionBatch, Agent, AgentContext, Observation
from agents.host import AgentHost
from agents.population import Population
from agents.scenarios.guess_two_thirds import GuessParams, GuessTwoThirds
from agents.spec import RunSpec
from backend import services
from backend.services import roster
from backend.services.roster import Roster
from backend.store import actions, records, runs, surveys
from tests.conftest import spec_data
from tests.helpers import Answers, Raises, ReportsError, profile

TOTAL = 300
CHUNK = 64  # five chunks a round, the last part-full


class Shares(Agent):
    """Answers with a mapping, as the social kinds do, and spends tokens."""

    __slots__ = ()
    synchronous = True

    def decide(self, observation: Observation) -> Action:
        return Action({"act": "share", "text": f"news from {self.id}", "of": observation.round}, tokens=3)


class Says(Agent):
    __slots__ = ()
    synchronous = True

    def decide(self, observation: Observation) -> Action:
        return Action("=just text")  # like a formula: the CSV quotes it


async def engine_batches(spec: RunSpec) -> list[ActionBatch]:
    """Rounds 1 and 2: the run's own agents playing the game (all numbers, one array); round 3:
    agents that fail, say text or mappings and spend tokens (a list of payloads)."""
    host = AgentHost(0, agent_timeout=1)
    host.populate(spec.population, spec.seed, range(TOTAL))
    game = GuessTwoThirds(GuessParams(), rounds=3, population=TOTAL, seed=spec.seed)
    batches = []
    for round in (1, 2):
        batch = await host.step(round, game.observe(round).public, {})
        game.apply(round, batch)
        batches.append(batch)
    kinds = [Answers, Raises, ReportsError, Shares, Says, Answers, Shares]
    context = AgentContext(seed=spec.seed, params=None)
    mixed = AgentHost(0, agent_timeout=1)
    mixed.add([kinds[i % len(kinds)](profile(i), context) for i in range(TOTAL)])
    batches.append(await mixed.step(3, {"max_value": 100}, {}))
    return batches


def expected_actions(batches: list[ActionBatch], ids: Any = None) -> list[dict[str, Any]]:
    """What the recorder stores of each action: a number, or another payload, or why none."""
    rows = []
    for round, batch in enumerate(batches, 1):
        payloads = batch.payloads.tolist() if isinstance(batch.payloads, np.ndarray) else batch.payloads
        for agent in batch.ids if ids is None else ids:
            p = payloads[agent - batch.ids.start]
            number = type(p) in (int, float)
            rows.append(
                {
                    "round": round,
                    "agent_id": agent,
                    "value": float(p) if number else None,
                    "payload": None if number else p,
                    "error": batch.errors.get(agent),
                    "tokens": batch.tokens.get(agent, 0),
                }
            )
    return rows


async def recorded_run(rt, batches: list[ActionBatch], sample: Any = None) -> tuple[int, RunSpec]:
    spec = RunSpec.parse(spec_data(**{"population.total": TOTAL}))
    async with rt.sessions() as session:
        run = await runs.create_run(session, spec=spec)
        conn = await session.connection()
        for round, batch in enumerate(batches, 1):
            await actions.write_round(conn, actions.encode_round(run.id, round, batch, sample))
        run.round = len(batches)
        await session.commit()
    return run.id, spec


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(actions, "CHUNK", CHUNK)


async def test_pages_and_surveys_read_what_the_engine_produced(runtime, small_chunks):
    batches = await engine_batches(RunSpec.parse(spec_data(**{"population.total": TOTAL})))
    assert isinstance(batches[0].payloads, np.ndarray)
    assert isinstance(batches[2].payloads, list)
    assert batches[2].errors
    assert batches[2].tokens
    run_id, spec = await recorded_run(runtime, batches)
    expected = expected_actions(batches)
    by_agent: dict[int, list[dict[str, Any]]] = {}
    for row in expected:
        by_agent.setdefault(row["agent_id"], []).append(row)
    async with runtime.sessions() as session:
        assert await records.count_actions(session, run_id=run_id) == 3 * TOTAL
        for agent in range(TOTAL):
            got = await records.agent_actions(session, run_id=run_id, agent_id=agent, rounds=3)
            assert [a._asdict() for a in got] == by_agent[agent]
        # A survey's sample, spread over the run: its agents' last answers.
        sample = [2, 3, 70, 71, 150, 299]
        recent = await surveys.recent_actions(session, run_id=run_id, ids=sample, rounds=range(2, 4))
        assert {a: [x._asdict() for x in v] for a, v in recent.items()} == {
            a: by_agent[a][1:] for a in sample
        }
        # The failed filter: the agents whose action failed in a round, as the engine said.
        agents = Roster(spec)
        failed = agents.select([], failed=await roster.failed_in(runtime, run_id, 3))
        assert agents.page(failed, "id", False, [], 500, 0) == (
            sorted(batches[2].errors),
            len(batches[2].errors),
        )
        assert not agents.select([], failed=await roster.failed_in(runtime, run_id, 1)).any()
        # The stats by kind of agent: counted from the engine's numbers.
        groups = await records.group_stats(session, run_id=run_id, labels=agents.labels, kinds=agents.kinds)
        kinds = [p.kind for p in Population(spec.population, spec.seed).profiles(range(TOTAL))]
    want = []
    for round in (1, 2, 3):
        mine = [r for r in expected if r["round"] == round]
        for kind in sorted(set(kinds)):
            rows = [r for r in mine if kinds[r["agent_id"]] == kind]
            numbers = [r["value"] for r in rows if r["value"] is not None]
            want.append(
                {
                    "round": round,
                    "kind": kind,
                    "agents": len(rows),
                    "cnt": len(numbers),
                    "avg": pytest.approx(np.mean(numbers)) if numbers else None,
                    "min": min(numbers, default=None),
                    "max": max(numbers, default=None),
                    "failed": sum(r["error"] is not None for r in rows),
                }
            )
    assert groups == want
    assert await services.groups(runtime, run_id, 3) == [g for g in want if g["round"] == 3]


async def test_exports_stream_the_chunks(runtime, small_chunks, tmp_path):
    batches = await engine_batches(RunSpec.parse(spec_data(**{"population.total": TOTAL})))
    run_id, _ = await recorded_run(runtime, batches)
    expected = expected_actions(batches)
    for format in ("json", "csv", "parquet"):
        out = tmp_path / f"actions.{format}"
        assert await services.export(runtime, run_id, table="actions", format=format, out=out) == len(
            expected
        )
    assert json.loads((tmp_path / "actions.json").read_text()) == expected
    with (tmp_path / "actions.csv").open(newline="") as f:
        shown = list(csv.DictReader(f))

    def as_csv(row: dict[str, Any]) -> dict[str, str]:
        cells = {}
        for key, value in row.items():
            if isinstance(value, dict | list):
                value = json.dumps(value)
            elif isinstance(value, str) and value.startswith("="):
                value = "'" + value
            cells[key] = "" if value is None else str(value)
        return cells

    assert shown == [as_csv(r) for r in expected]
    table = pq.read_table(tmp_path / "actions.parquet")
    assert [f.name for f in table.schema] == ["round", "agent_id", "value", "payload", "error", "tokens"]
    assert table.to_pylist() == [
        r | {"payload": r["payload"] if isinstance(r["payload"], str | None) else json.dumps(r["payload"])}
        for r in expected
    ]


async def test_a_sample_is_recorded_alone(runtime, small_chunks, tmp_path):
    batches = await engine_batches(RunSpec.parse(spec_data(**{"population.total": TOTAL})))
    sample = np.array(sorted({*range(0, TOTAL, 7), *range(100, 180)}), dtype=np.int64)
    run_id, _ = await recorded_run(runtime, batches, sample)
    expected = expected_actions(batches, sample.tolist())
    async with runtime.sessions() as session:
        assert await records.count_actions(session, run_id=run_id) == 3 * len(sample)
        found = await actions.actions_of(session, run_id=run_id, ids=range(TOTAL), rounds=range(1, 4))
        assert sorted(found) == sample.tolist()
        assert await records.agent_actions(session, run_id=run_id, agent_id=1, rounds=3) == []
        assert [
            a._asdict() for a in await records.agent_actions(session, run_id=run_id, agent_id=7, rounds=3)
        ] == [r for r in expected if r["agent_id"] == 7]
    out = tmp_path / "sample.json"
    assert await services.export(runtime, run_id, table="actions", format="json", out=out) == len(expected)
    assert json.loads(out.read_text()) == expected
    async with runtime.sessions() as session:
        await runs.claim_run(session, worker="a", lease_seconds=30, run_id=run_id)
        await runs.forget_after(session, run_id=run_id, round=1, worker="a")
        assert await records.count_actions(session, run_id=run_id) == len(sample)
        await runs.delete_run(session, run_id=run_id)
        assert await records.count_actions(session, run_id=run_id) == 0


def test_arrays_pack_small_and_come_back_equal():
    for array in (
        np.arange(50, dtype=np.int64),
        np.array([0.5, np.nan, 1e300]),
        np.array([-3, 200, 70000], dtype=np.int64),
        np.empty(0, dtype=np.float64),
    ):
        back, end = actions.unpack(actions.pack(array))
        assert back.tolist() == array.tolist() or np.array_equal(back, array, equal_nan=True)
        assert end == len(actions.pack(array))
    # Whole numbers are stored as the smallest integer type that holds them.
    guesses = actions.pack_numbers(np.arange(0, 101, dtype=np.float64))
    assert actions.unpack(guesses)[0].dtype == np.uint8
    assert actions.unpack(actions.pack_numbers(np.array([1.0, np.nan])))[0].dtype == np.float64


def test_a_list_of_numbers_and_failures_is_stored_as_numbers():
    batch = ActionBatch(range(10, 15), [1, None, 2.5, 2**70, True], errors={11: "boom"})
    encoded = actions.encode_round(7, 2, batch)
    (chunk,) = encoded.chunks
    assert chunk[2:5] == (10, 15, 5)
    decoded = actions.decode((2, *chunk[2:4], *chunk[5:]))
    assert [decoded.action(i, None)[2:4] for i in range(5)] == [
        (1.0, None),
        (None, None),
        (2.5, None),
        (float(2**70), None),
        (None, True),  # a bool is no number: a payload, as before
    ]
    assert encoded.failures == [(7, 2, 11, "boom")]
    # Numbers and failures alone take the fast path: no JSON payloads.
    (fast,) = actions.encode_round(7, 3, ActionBatch(range(3), [4, None, 0.5], errors={1: "x"})).chunks
    assert fast[7] is None
    assert actions.unpack(fast[6])[0].tolist()[::2] == [4.0, 0.5]


async def test_actions_of_agents_past_the_population_are_counted_in_no_kind(runtime, small_chunks):
    """A spec edited by hand may name fewer agents than were recorded: the stats by kind count
    the agents it has, and do not fail."""
    run_id, _ = await recorded_run(runtime, [ActionBatch(range(TOTAL), [5] * TOTAL)])
    kinds = np.zeros(10, dtype=np.int16)
    async with runtime.sessions() as session:
        groups = await records.group_stats(session, run_id=run_id, labels=["a"], kinds=kinds)
    assert [(g["kind"], g["agents"], g["avg"]) for g in groups] == [("a", 10, 5.0)]
