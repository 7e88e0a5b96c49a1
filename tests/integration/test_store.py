import asyncio
from datetime import timedelta

import pytest
from alembic import command
from sqlalchemy import select, update

from agents.core import ActionBatch
from agents.placement import Slot
from agents.population import Population
from agents.scenarios import RoundResult
from agents.spec import RunSpec
from backend.domain import RunStatus
from backend.store import actions, records, runs
from backend.store import agents as stored_agents
from backend.store.db import alembic_config
from backend.store.models import Run
from tests.conftest import spec_data


def test_migrations_match_the_models(database_url):
    command.check(alembic_config(database_url))  # raises if the models differ from the migrated schema


async def new_run(rt, **changes) -> Run:
    async with rt.sessions() as session:
        return await runs.create_run(session, spec=RunSpec.parse(spec_data(**changes)))


async def claim(rt, worker: str, run_id: int | None = None, lease: float = 30) -> Run | None:
    async with rt.sessions() as session:
        return await runs.claim_run(session, worker=worker, lease_seconds=lease, run_id=run_id)


async def expire(rt, run_id: int) -> None:
    async with rt.sessions() as session:
        await session.execute(
            update(Run).where(Run.id == run_id).values(lease_expires=runs.now() - timedelta(seconds=1))
        )
        await session.commit()


async def test_a_lease_belongs_to_one_worker_until_it_expires(runtime):
    run = await new_run(runtime)
    claimed = await claim(runtime, "a", run.id)
    assert (claimed.status, claimed.lease_owner, claimed.attempts) == (RunStatus.RUNNING, "a", 1)
    assert await claim(runtime, "b", run.id) is None
    async with runtime.sessions() as session:
        await runs.renew_lease(session, run_id=run.id, worker="a", lease_seconds=30)
        with pytest.raises(runs.LeaseLost):
            await runs.renew_lease(session, run_id=run.id, worker="b", lease_seconds=30)
    await expire(runtime, run.id)
    taken = await claim(runtime, "b", run.id)
    assert (taken.lease_owner, taken.attempts) == ("b", 2)
    async with runtime.sessions() as session:
        with pytest.raises(runs.LeaseLost):
            await runs.fence(session, run_id=run.id, worker="a", round=3)


async def test_racing_workers_claim_a_run_once(runtime):
    run = await new_run(runtime)
    winners = await asyncio.gather(*(claim(runtime, f"w{i}", run.id) for i in range(8)))
    assert [w.lease_owner for w in winners if w is not None] in ([f"w{i}"] for i in range(8))


async def test_workers_claim_different_runs(runtime):
    while await claim(runtime, "earlier") is not None:  # runs an earlier test left claimable
        pass
    made = {(await new_run(runtime)).id for _ in range(4)}
    claimed = [r.id for r in await asyncio.gather(*(claim(runtime, f"w{i}") for i in range(4))) if r]
    assert claimed, "no worker claimed a run"
    assert len(set(claimed)) == len(claimed), f"a run was claimed twice: {claimed}"
    # A worker that lost a race for a run gets None (SQLite) and claims another next time.
    while (later := await claim(runtime, "later")) is not None:
        claimed.append(later.id)
    assert sorted(claimed) == sorted(made)


async def test_finished_runs_cannot_be_claimed(runtime):
    run = await new_run(runtime)
    await claim(runtime, "a", run.id)
    async with runtime.sessions() as session:
        await runs.set_status(session, run_id=run.id, status=RunStatus.COMPLETED, worker="a")
        finished = await runs.get_run(session, run_id=run.id)
    assert (finished.status, finished.lease_owner) == (RunStatus.COMPLETED, None)
    assert await claim(runtime, "b", run.id) is None


async def test_bulk_rows_round_trip_and_forget_after(runtime):
    run = await new_run(runtime, **{"population.total": 50})
    await claim(runtime, "a", run.id)
    spec = RunSpec.parse(run.spec)
    profiles = Population(spec.population, spec.seed).profiles(range(50))
    async with runtime.sessions() as session:
        conn = await session.connection()
        await stored_agents.place(
            session,
            run_id=run.id,
            slots=[Slot(0, "a", range(0, 20)), Slot(1, "b", range(20, 50))],
            nodes={1: "n"},
        )
        written = [f"{p.background} Written." for p in profiles]
        await stored_agents.save_backgrounds(conn, run_id=run.id, start=0, written=written)
        for round in (1, 2, 3):
            batch = ActionBatch(
                range(50), [round] * 48 + [None, {"say": "hi"}], errors={48: "boom"}, tokens={49: 5}
            )
            await actions.write_round(conn, actions.encode_round(run.id, round, batch))
            await records.save_round(session, run_id=run.id, result=RoundResult(round, {"avg": float("nan")}))
            await records.add_event(session, run_id=run.id, round=round, kind="round", payload={})
        asked = {"agent": 3, "question": "Why?", "usage": {"m": {"calls": 1, "prompt_tokens": 7}}}
        await records.add_event(session, run_id=run.id, round=3, kind="interview", payload=asked)
        await session.commit()
    async with runtime.sessions() as session:
        assert await stored_agents.hosts(session, run_id=run.id) == [
            stored_agents.HostRange(0, range(0, 20), None),
            stored_agents.HostRange(1, range(20, 50), "n"),
        ]
        assert await stored_agents.count_backgrounds(session, run_id=run.id) == 50
        assert await stored_agents.backgrounds(session, run_id=run.id, ids=range(5, 8)) == {
            i: written[i] for i in (5, 6, 7)
        }
        assert await stored_agents.backgrounds(session, run_id=run.id, ids=[49, 3]) == {
            i: written[i] for i in (3, 49)
        }
        rows = await actions.actions_of(session, run_id=run.id, ids=range(50), rounds=range(2, 3))
        by_agent = {agent: actions_[0] for agent, actions_ in rows.items()}
        assert (by_agent[0].value, by_agent[0].payload, by_agent[0].error) == (2.0, None, None)
        assert (by_agent[48].value, by_agent[48].error) == (None, "boom")
        assert (by_agent[49].payload, by_agent[49].tokens) == ({"say": "hi"}, 5)
        assert (await records.list_rounds(session, run_id=run.id))[0].stats == {"avg": None}
        await runs.forget_after(session, run_id=run.id, round=1, worker="a")
        assert await records.count_actions(session, run_id=run.id) == 50
        assert [r.round for r in await records.list_rounds(session, run_id=run.id)] == [1]
        # The rounds' events go with them; an interview was asked (and paid for) all the same.
        kept = await records.list_events(session, run_id=run.id)
        assert [(e.kind, e.round) for e in kept] == [("interview", 3), ("round", 1)]
        assert await records.usage_outside_rounds(session, run_id=run.id) == {
            "interviews": {"m": {"calls": 1, "prompt_tokens": 7}},
            "surveys": {},
            "backgrounds": {},
        }


async def test_a_worker_never_claims_a_run_it_is_still_driving(runtime):
    """Its lease on the run ran out while the database was away; the run is claimable again, but
    not by the worker that still drives it (a second driver would pass every fence)."""
    run = await new_run(runtime)
    assert (await claim(runtime, "a", lease=0.01)).id == run.id
    await asyncio.sleep(0.05)
    async with runtime.sessions() as session:
        again = await runs.claim_run(session, worker="a", lease_seconds=30, driving=[run.id])
    assert again is None
    assert (await claim(runtime, "b")).id == run.id  # another worker takes it over


async def test_a_spec_is_stored_as_written_so_its_agents_are_the_same_everywhere(runtime):
    """The order of a spec's categories decides who its agents are: a database that sorted the
    spec's keys (Postgres's JSONB does, by length) gave a run other agents than the engine alone."""
    written = {"education": {"university": 30, "school": 70}, "gender": {"female": 50, "male": 50}}
    spec = RunSpec.parse(spec_data(**{"population.total": 200, "population.attributes": written}))
    run = await new_run(runtime, **{"population.total": 200, "population.attributes": written})
    async with runtime.sessions() as session:
        stored = (await session.execute(select(Run.spec).where(Run.id == run.id))).scalar_one()
    assert stored["population"]["attributes"] == written
    assert [list(c) for c in stored["population"]["attributes"].values()] == [
        ["university", "school"],
        ["female", "male"],
    ]
    again = RunSpec.stored(stored)
    assert Population(again.population, again.seed).profiles(range(200)) == Population(
        spec.population, spec.seed
    ).profiles(range(200))
