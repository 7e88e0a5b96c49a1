"""Faults of a real deployment (issue 10): Redis killed and restarted, Postgres connections
terminated, an AgentHost SIGKILLed, a poisoned stored run, a worker killed or stopped while its run
is paused. Each run is compared with an undisturbed run of the same spec: every round and every
action row identical, no action twice, the stored history complete."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from typing import Any

import pytest
from sqlalchemy import func, select, update

from agents.simulation import Simulation
from agents.spec import RunSpec
from backend import services
from backend.domain import RunStatus
from backend.runtime import Runtime
from backend.store.models import CheckpointRow, Run
from backend.workflow.worker import Worker
from tests.conftest import spec_data, stub_model
from tests.faults.conftest import (
    FINAL,
    WorkerProcess,
    assert_events_complete,
    assert_identical,
    fault_spec,
    lease_of,
    progress_after,
    reference_run,
    run_row,
    stored_events,
    stored_rounds,
    wait_for_end,
    wait_for_round,
)
from tests.waiting import wait_for_async

pytestmark = pytest.mark.usefixtures("ray_cluster")
POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


async def ready(*started: WorkerProcess, timeout: float = 60) -> None:
    """Wait until every worker has connected and looks for runs."""

    async def up() -> bool:
        for worker in started:
            assert worker.alive, worker.describe()
        return all("waiting for runs" in w.log() for w in started)

    await wait_for_async(up, "the workers to be ready", timeout, every=0.2)


def states(*started: WorkerProcess) -> str:
    """What became of the workers, for a failure's message."""
    return "\n".join(w.describe() for w in started)


def explain(*started: WorkerProcess):
    async def describe() -> str:
        return states(*started)

    return describe


async def leased_to(rt: Runtime, run_id: int, *names: str) -> str | None:
    status, owner, _, _ = await lease_of(rt, run_id)
    assert status not in FINAL, f"run {run_id} ended ({status}) before a worker took it"
    return owner if owner in names else None


# -- Redis -----------------------------------------------------------------------------------------


@pytest.mark.timeout(150)
async def test_redis_killed_mid_run_and_restarted_after_ten_seconds(
    runtime, workers, redis_server, recoveries
):
    """The live layer's Redis is SIGKILLed at round 2 and started again (empty) 10 s later, while
    one worker process drives the run and another waits for work: the run waits out the outage
    at a round boundary, completes identical, both workers live on, and the outage is on record."""
    spec = fault_spec()
    reference = await reference_run(runtime, spec)
    started = (workers("a"), workers("b"))
    await ready(*started)
    run = await services.submit(runtime, spec)
    owner = await wait_for_async(
        lambda: leased_to(runtime, run.id, "a", "b"), "a worker to claim the run", 30
    )
    await wait_for_round(runtime, run.id, 2)
    redis_server.kill()
    await asyncio.sleep(10)
    during = await run_row(runtime, run.id)
    redis_server.start()
    back = await progress_after(runtime, run.id, time.monotonic())
    # The run waited for the live layer instead of failing or running on without it.
    assert (during.status, during.error) == ("running", None), states(*started)
    assert during.round < spec.rounds, "the run did not wait for the live layer"
    done = await wait_for_end(runtime, run.id, 60, explain(*started))
    assert (done.status, done.error) == ("completed", None), states(*started)
    for worker in started:
        assert worker.alive, f"{'driving' if worker.name == owner else 'idle'} {worker.describe()}"
    await assert_identical(runtime, run.id, reference, spec)
    events = await assert_events_complete(runtime, run.id)
    outages = [e.payload for e in events if e.kind == "outage"]
    assert len(outages) == 1, [e.kind for e in events]
    assert outages[0]["service"] == "live layer"
    assert isinstance(outages[0]["seconds"], float)
    assert 5 <= outages[0]["seconds"] < 60
    recoveries.append(("Redis killed mid-run, back after 10 s", "completed, identical", back))


@pytest.mark.timeout(150)
async def test_redis_down_past_the_bound_releases_the_run_resumable(
    runtime, workers, redis_server, recoveries
):
    """Redis stays down longer than the worker's bound (MYRIAD_LIVE_OUTAGE_SECONDS=3): the worker
    hands the run back at a round boundary (still running, lease released, checkpoint where it
    stands, never failed); once Redis is back a worker claims it and it completes identical."""
    spec = fault_spec()
    reference = await reference_run(runtime, spec)
    worker = workers("bounded", MYRIAD_LIVE_OUTAGE_SECONDS="3")
    run = await services.submit(runtime, spec)
    await wait_for_round(runtime, run.id, 2, timeout=60)
    redis_server.kill()
    killed = time.monotonic()

    async def released() -> Run | None:
        row = await run_row(runtime, run.id)
        assert row.status != "failed", f"the run failed instead of being released: {row.error}"
        assert row.status in ("running", "paused"), row
        return row if row.lease_owner is None else None

    handed = await wait_for_async(released, "the run to be released while Redis is down", 20, every=0.02)
    assert time.monotonic() - killed >= 2.5, "released before the bound of 3 s"
    async with runtime.sessions() as session:
        saved = await session.scalar(
            select(func.max(CheckpointRow.round)).where(CheckpointRow.run_id == run.id)
        )
    assert saved == handed.round, "no checkpoint where the run was released"
    assert worker.alive, worker.describe()
    redis_server.start()
    back = await progress_after(runtime, run.id, time.monotonic())
    done = await wait_for_end(runtime, run.id, 60, explain(worker))
    assert (done.status, done.error) == ("completed", None), states(worker)
    assert done.attempts >= 2
    assert worker.alive, worker.describe()
    await assert_identical(runtime, run.id, reference, spec)
    events = await assert_events_complete(runtime, run.id)
    assert "released" in [e.kind for e in events]
    outcome = "released at the bound (3 s), taken over once Redis was back, completed, identical"
    recoveries.append(("Redis down past the bound", outcome, back))


# -- Postgres --------------------------------------------------------------------------------------


# The recorder's transaction of a round: the lease's fence moving the round, the round, its actions.
WRITING_A_ROUND = re.compile(r"UPDATE runs SET round=|INSERT INTO rounds\b|COPY\b.*\bactions\b", re.I | re.S)


@POSTGRES
@pytest.mark.timeout(150)
async def test_one_postgres_connection_terminated_mid_transaction(runtime, workers, pg_faults, recoveries):
    """One of the worker's Postgres connections is terminated while it is idle in a transaction
    (a round being written): the write is retried or the run rewinds to its checkpoint, and it
    completes identical, no action row stored twice."""
    spec = fault_spec(rounds=20)
    reference = await reference_run(runtime, spec)
    worker = workers("driver")
    run = await services.submit(runtime, spec)
    await wait_for_round(runtime, run.id, 1, timeout=60)

    checked = time.monotonic()

    async def caught() -> dict[str, Any] | None:
        nonlocal checked
        if time.monotonic() - checked > 0.5:
            checked = time.monotonic()
            row = await run_row(runtime, run.id)
            assert row.status not in FINAL, f"the run ended ({row.status}) before the fault: {row.error}"
        for backend in await pg_faults.backends(worker.pid, state="idle in transaction"):
            if WRITING_A_ROUND.search(backend["query"]) and await pg_faults.terminate(backend):
                return backend
        return None

    victim = await wait_for_async(caught, "the recorder's connection idle in transaction", 30, every=0.002)
    assert (await run_row(runtime, run.id)).round < spec.rounds, "the fault came after the run"
    back = await progress_after(runtime, run.id, time.monotonic())
    done = await wait_for_end(runtime, run.id, 60, explain(worker))
    assert (done.status, done.error) == ("completed", None), f"terminated {victim}\n{states(worker)}"
    assert worker.alive, worker.describe()
    await assert_identical(runtime, run.id, reference, spec)
    await assert_events_complete(runtime, run.id)
    fault = "one Postgres connection terminated mid-transaction"
    recoveries.append((fault, "write retried, completed, identical, no duplicate", back))


@POSTGRES
@pytest.mark.timeout(180)
async def test_every_worker_connection_terminated_for_ten_seconds(runtime, workers, pg_faults, recoveries):
    """Every Postgres connection of the worker is terminated every 0.1 s for 10 s, from round 2
    on: the run completes identical, and the worker lives on and drives the next run."""
    spec = fault_spec(rounds=30)
    reference = await reference_run(runtime, spec)
    worker = workers("driver")
    run = await services.submit(runtime, spec)
    await wait_for_round(runtime, run.id, 2, timeout=60)
    until = time.monotonic() + 10
    while time.monotonic() < until:
        for backend in await pg_faults.backends(worker.pid):
            await pg_faults.terminate(backend)
        await asyncio.sleep(0.1)
    assert pg_faults.terminated, "no connection of the worker was found"
    back = await progress_after(runtime, run.id, time.monotonic())
    done = await wait_for_end(runtime, run.id, 60, explain(worker))
    assert (done.status, done.error) == ("completed", None), states(worker)
    assert worker.alive, worker.describe()
    await assert_identical(runtime, run.id, reference, spec)
    await assert_events_complete(runtime, run.id)
    following = await services.submit(runtime, fault_spec(rounds=2, **{"population.total": 500}))
    after = await wait_for_end(runtime, following.id, 60, explain(worker))
    assert (after.status, after.error) == ("completed", None), states(worker)
    assert worker.alive, worker.describe()
    fault = "every worker connection to Postgres terminated every 0.1 s for 10 s"
    recoveries.append((fault, "completed, identical; the worker took the next run", back))


@POSTGRES
@pytest.mark.timeout(180)
async def test_the_database_away_past_the_bound_leaves_the_run_to_its_lease(
    runtime, workers, database_link, recoveries
):
    """The worker's link to Postgres is cut for 8 s, longer than its bound
    (MYRIAD_STORE_OUTAGE_SECONDS=3): it abandons the run (nothing can be written) and lives on;
    once the link is back and the lease has expired, the run is taken over from its checkpoint
    and completes identical, no action stored twice."""
    spec = fault_spec(rounds=20)
    reference = await reference_run(runtime, spec)
    worker = workers("cut off", DATABASE_URL=database_link.url, MYRIAD_STORE_OUTAGE_SECONDS="3")
    run = await services.submit(runtime, spec)
    await wait_for_round(runtime, run.id, 2, timeout=60)
    database_link.cut()
    await asyncio.sleep(8)
    during = await run_row(runtime, run.id)
    assert (during.status, during.error) == ("running", None), states(worker)
    assert during.round < spec.rounds, "the fault came after the run"
    assert worker.alive, worker.describe()
    assert "abandons run" in worker.log(), worker.describe()
    database_link.mend()
    back = await progress_after(runtime, run.id, time.monotonic())
    done = await wait_for_end(runtime, run.id, 60, explain(worker))
    assert (done.status, done.error) == ("completed", None), states(worker)
    assert done.attempts == 2
    assert worker.alive, worker.describe()
    await assert_identical(runtime, run.id, reference, spec)
    kinds = [e.kind for e in await assert_events_complete(runtime, run.id)]
    assert "worker lost" in kinds, kinds
    outcome = "abandoned at the bound (3 s), taken over once the link was back, completed, identical"
    recoveries.append(("the worker's link to Postgres cut for 8 s", outcome, back))


# -- Ray -------------------------------------------------------------------------------------------


@pytest.mark.timeout(180)
async def test_one_agenthost_killed_on_a_single_node_cluster(runtime, workers, recoveries):
    """A worker with its own one-node Ray (as the embedded default runs) drives the run; one of
    its AgentHost processes is SIGKILLed at round 2. The node lives, so the host is restarted
    there and the run rewinds to its checkpoint: it completes identical, "host lost" on record."""
    spec = fault_spec()
    reference = await reference_run(runtime, spec)
    worker = workers("single", own_ray=True)
    run = await services.submit(runtime, spec)
    await wait_for_round(runtime, run.id, 2, timeout=90)
    hosts = [h for h in (await services.cluster(runtime))["hosts"] if h["run_id"] == run.id]
    assert len(hosts) == 2, hosts
    mine = {p.pid for p in worker.tagged()}
    assert hosts[0]["pid"] in mine, "the host is not a process of the worker's own Ray"
    os.kill(hosts[0]["pid"], signal.SIGKILL)
    back = await progress_after(runtime, run.id, time.monotonic())
    done = await wait_for_end(runtime, run.id, 90, explain(worker))
    assert (done.status, done.error) == ("completed", None), states(worker)
    assert worker.alive, worker.describe()
    await assert_identical(runtime, run.id, reference, spec)
    kinds = [e.kind for e in await assert_events_complete(runtime, run.id)]
    assert "node lost" not in kinds, kinds
    assert "host lost" in kinds, kinds
    assert kinds.index("host lost") < kinds.index("recovered"), kinds

    async def hosts_stopped() -> bool:  # the hosts started again are stopped with the run too
        return not [p for p in worker.tagged() if "AgentHost" in " ".join(p.cmdline())]

    await wait_for_async(hosts_stopped, "the run's hosts to stop after it ended", 30)
    outcome = "host started again on its node, rewound to the checkpoint, completed, identical"
    recoveries.append(("one AgentHost SIGKILLed, single-node cluster", outcome, back))


# -- a bad run, an abandoned run -----------------------------------------------------------------


@pytest.mark.timeout(150)
async def test_a_poisoned_stored_spec_fails_its_run_not_the_workers(runtime, workers, recoveries):
    """A queued run's stored spec stops validating (a kind parameter a newer version refuses)
    before any worker sees it; two workers start: the run ends failed with the reason, both
    workers live on, and the next valid run completes."""
    spec = fault_spec(rounds=3)
    run = await services.submit(runtime, spec)
    poisoned = spec.model_dump(mode="json")
    poisoned["population"]["kinds"][1]["params"] = {"k": 99}
    async with runtime.sessions() as session:
        await session.execute(update(Run).where(Run.id == run.id).values(spec=poisoned))
        await session.commit()
    with pytest.raises(ValueError, match="less than or equal to 3"):
        RunSpec.stored((await run_row(runtime, run.id)).spec)
    started = (workers("a"), workers("b"))
    since = time.monotonic()
    done = await wait_for_end(runtime, run.id, 30, explain(*started))
    failed_in = time.monotonic() - since
    assert done.status == "failed", states(*started)
    assert "population.kinds.1" in done.error
    assert "less than or equal to 3" in done.error
    assert done.lease_owner is None
    await asyncio.sleep(2)  # a worker that dies of it would be gone by now
    for worker in started:
        assert worker.alive, worker.describe()
    events = await stored_events(runtime, run.id)
    assert events, "no event of the run is stored"
    assert events[-1].kind == "failed"
    assert "less than or equal to 3" in events[-1].payload["error"]
    following = await services.submit(runtime, fault_spec(rounds=2, **{"population.total": 500}))
    after = await wait_for_end(runtime, following.id, 60, explain(*started))
    assert (after.status, after.error) == ("completed", None), states(*started)
    for worker in started:
        assert worker.alive, worker.describe()
    outcome = "run failed with the reason (workers starting included); both workers took the next run"
    recoveries.append(("a poisoned stored spec, two workers", outcome, failed_in))


@pytest.mark.timeout(120)
async def test_stop_ends_a_running_run_whose_worker_is_gone(runtime, workers, recoveries):
    """The only worker is SIGKILLed mid-run and its lease runs out; `stop` then ends the run at
    once (no worker is left to take the command): stopped, lease cleared, on record."""
    run = await services.submit(runtime, fault_spec(rounds=40))
    worker = workers("gone")
    await wait_for_round(runtime, run.id, 1, timeout=60)
    worker.kill()
    await asyncio.sleep(3.5)  # the lease (3 s) has expired
    asked = time.monotonic()
    stopped = await services.control(runtime, run.id, "stop")
    took = time.monotonic() - asked
    assert stopped.status == "stopped"
    row = await run_row(runtime, run.id)
    assert (row.status, row.lease_owner) == ("stopped", None)
    events = await stored_events(runtime, run.id)
    assert events
    assert events[-1].kind == "stopped"
    recoveries.append(("stop a running run whose worker is gone", "stopped at once", took))


# -- control across takeovers ----------------------------------------------------------------------


async def pause(rt: Runtime, run_id: int) -> int:
    """Pause the run and wait until its worker has; returns the round it stands at."""
    await services.control(rt, run_id, "pause")

    async def paused() -> Run | None:
        row = await run_row(rt, run_id)
        return row if row.status == "paused" else None

    return (await wait_for_async(paused, "the run to pause", 15)).round


async def stays_paused(rt: Runtime, run_id: int, at: int, seconds: float) -> None:
    """The run stays paused at round `at` for `seconds`."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        row = await run_row(rt, run_id)
        assert (row.status, row.round) == ("paused", at), f"the paused run went on: {row!r}"
        await asyncio.sleep(0.1)


@pytest.mark.timeout(150)
async def test_a_paused_run_stays_paused_when_its_worker_is_killed(runtime, workers, recoveries):
    """The user pauses the run, then its worker is SIGKILLed: the worker that takes the run over
    once the lease expires keeps it paused; resumed, it completes identical, and the takeover
    is on record as "worker lost"."""
    spec = fault_spec()
    reference = await reference_run(runtime, spec)
    first = workers("first")
    run = await services.submit(runtime, spec)
    await wait_for_round(runtime, run.id, 2, timeout=60)
    at = await pause(runtime, run.id)
    first.kill()
    killed = time.monotonic()
    second = workers("second")
    await wait_for_async(
        lambda: leased_to(runtime, run.id, "second"), "the second worker to take the run", 60
    )
    taken = time.monotonic() - killed
    await stays_paused(runtime, run.id, at, 4)
    await services.control(runtime, run.id, "resume")
    done = await wait_for_end(runtime, run.id, 60, explain(second))
    assert (done.status, done.error, done.attempts) == ("completed", None, 2)
    await assert_identical(runtime, run.id, reference, spec)
    events = await assert_events_complete(runtime, run.id)
    lost = [e.payload.get("worker") for e in events if e.kind == "worker lost"]
    assert lost == ["first"], [e.kind for e in events]
    outcome = "taken over (lease 3 s, a new worker started), stayed paused; resumed: completed, identical"
    recoveries.append(("pause, then the worker SIGKILLed", outcome, taken))


def llm_spec(url: str) -> RunSpec:
    """Language-model guessers (their prompts show what was injected) and probes, 8 rounds."""
    model = stub_model(url)
    kinds = [
        {"kind": "llm_guess", "share": 50, "params": {"model": "stub", "prompt": "direct"}},
        {"kind": "probe", "share": 50, "params": {"delay": 0.3}},
    ]
    changes = {
        "name": "llm fault",
        "rounds": 8,
        "placement": {"hosts": 2, "agent_timeout": 30},
        "llm": {"models": {"stub": model}},
        "population.total": 600,
        "population.kinds": kinds,
    }
    return RunSpec.parse(spec_data(**changes))


INJECTED = {"content": "rates fall", "where": {"gender": "female"}}


async def with_injection_at(rt: Runtime, spec: RunSpec, k: int) -> int:
    """An undisturbed run of `spec` into which INJECTED is sent after round `k`, driven by an
    in-process worker: it reaches the agents in round k+1."""
    run = await services.submit(rt, spec)

    async def after(result) -> None:
        if result.round == k:
            await services.control(rt, run.id, "inject", **INJECTED)

    worker = Worker(rt)
    claimed = await worker.claim(run.id)
    assert claimed is not None
    assert await asyncio.wait_for(worker.drive(claimed, on_round=after), 90) == RunStatus.COMPLETED
    return run.id


async def plain_stats(spec: RunSpec) -> list[dict]:
    async def run() -> list[dict]:
        async with Simulation(spec) as sim:
            return [r.stats async for r in sim.rounds()]

    return await asyncio.wait_for(run(), 90)


@pytest.mark.timeout(180)
async def test_an_injection_is_delivered_once_across_a_handover(runtime, workers, llm_stub, recoveries):
    """The run is paused at round k, a message injected, and the worker SIGTERMed (it hands the
    run back); the next worker keeps it paused and is resumed: the message reaches its agents in
    round k+1, once, exactly as in an undisturbed run with the same injection."""
    spec = llm_spec(llm_stub.url)
    first = workers("first")
    run = await services.submit(runtime, spec)
    await wait_for_round(runtime, run.id, 2, timeout=60)
    k = await pause(runtime, run.id)
    await services.control(runtime, run.id, "inject", **INJECTED)

    async def injected() -> bool:  # by the paused worker, which looks every 0.2 s
        return any(e.kind == "injected" for e in await stored_events(runtime, run.id))

    await wait_for_async(injected, "the paused worker to take the injection", 30)
    await asyncio.sleep(0.5)
    first.signal(signal.SIGTERM)
    signalled = time.monotonic()
    assert await first.wait(60) == 0, first.describe()
    assert (await run_row(runtime, run.id)).lease_owner is None
    second = workers("second")
    await wait_for_async(
        lambda: leased_to(runtime, run.id, "second"), "the second worker to take the run", 60
    )
    taken = time.monotonic() - signalled
    await asyncio.sleep(2)
    row = await run_row(runtime, run.id)
    stayed_paused = (row.status, row.round) == ("paused", k)
    if row.status == "paused":
        await services.control(runtime, run.id, "resume")
    done = await wait_for_end(runtime, run.id, 90, explain(second))
    assert (done.status, done.error) == ("completed", None), states(second)
    second.stop()  # no worker process may race for the reference run

    reference = await with_injection_at(runtime, spec, k)
    expected = [r[1] for r in await stored_rounds(runtime, reference)]
    plain = await plain_stats(spec)
    assert expected[:k] == plain[:k]
    assert expected[k] != plain[k], "the injection changes nothing: the test cannot tell"
    got = [r[1] for r in await stored_rounds(runtime, run.id)]
    assert got[k] != plain[k], f"the injection sent at round {k} never arrived"
    await assert_identical(runtime, run.id, reference, spec)

    async def guesser(gender: str) -> services.AgentView:
        found, _ = await services.list_agents(runtime, run.id, attributes={"gender": gender}, limit=500)
        return next(a for a in found if a.kind.startswith("llm_guess"))

    assert await services.messages(runtime, run.id, await guesser("female")) == [
        {"round": k + 1, "content": INJECTED["content"], "public": False}
    ]
    assert await services.messages(runtime, run.id, await guesser("male")) == []
    injected = [e for e in await stored_events(runtime, run.id) if e.kind == "injected"]
    assert len(injected) == 1, injected
    assert stayed_paused, f"the run did not stay paused at round {k} after the handover"
    await assert_events_complete(runtime, run.id)
    outcome = "handed back, taken over (a new worker started), delivered once in round k+1, identical"
    recoveries.append(("inject, then the worker SIGTERMed", outcome, taken))
