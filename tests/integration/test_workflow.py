"""The workflow service on a real Ray cluster, with SQLite and the real Postgres and Redis."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from agents.scenarios.guess_two_thirds import GuessTwoThirds
from agents.simulation import Simulation
from agents.spec import RunSpec
from backend import services
from backend.domain import IllegalTransition, RunStatus
from backend.runtime import Runtime
from backend.store import actions, commands, records
from backend.store import agents as stored_agents
from backend.store.models import CheckpointRow, EventRow
from backend.workflow.worker import Worker
from tests.conftest import spec_data
from tests.waiting import wait_for_async

pytestmark = pytest.mark.usefixtures("ray_cluster")

PROBES = [{"kind": "probe", "share": 100, "params": {"delay": 0.3}}]


def spec(**changes) -> RunSpec:
    return RunSpec.parse(spec_data(**{"placement": {"hosts": 2}, **changes}))


async def uninterrupted(run_spec: RunSpec) -> list[dict]:
    async with Simulation(run_spec) as sim:
        return [r.stats async for r in sim.rounds()]


async def stored_stats(rt: Runtime, run_id: int) -> list[dict]:
    return [r.stats for r in await services.rounds(rt, run_id)]


async def status_of(rt: Runtime, run_id: int) -> str:
    return (await services.get_run(rt, run_id)).status


async def test_a_worker_drives_a_run_to_completion_and_records_it(runtime):
    run_spec = spec(rounds=3, record={"sample": 10})
    run = await services.submit(runtime, run_spec)
    worker = Worker(runtime)
    status = await worker.drive(await worker.claim(run.id))
    assert status == RunStatus.COMPLETED
    done = await services.get_run(runtime, run.id)
    assert (done.status, done.round, done.lease_owner) == ("completed", 3, None)
    assert await stored_stats(runtime, run.id) == await uninterrupted(run_spec)
    async with runtime.sessions() as session:
        placed = await stored_agents.hosts(session, run_id=run.id)
        assert [h.ids for h in placed] == [range(0, 500), range(500, 1000)]
        assert await records.count_actions(session, run_id=run.id) == 3 * 10
        kept = (
            await session.scalars(select(CheckpointRow.round).where(CheckpointRow.run_id == run.id))
        ).all()
        assert sorted(kept) == [2, 3]  # every round, newest two kept
    live = await runtime.live.state(run.id)
    assert (live["status"], live["round"]) == ("completed", 3)
    kinds = [e["kind"] for _, e in await runtime.live.events(run.id)]
    assert kinds[:2] == ["queued", "started"]
    assert kinds.count("round") == 3
    assert kinds[-1] == "completed"


async def test_a_run_too_big_for_the_cluster_fails_before_it_is_placed(runtime):
    """Queued while no worker had reported the cluster (so not checked then), a run with more
    hosts than the cluster takes is failed with the numbers by the worker that claims it."""
    run = await services.submit(runtime, spec(placement={"hosts": 13}))  # 3 CPUs: 12 hosts at most
    worker = Worker(runtime)
    assert await worker.drive(await worker.claim(run.id)) == RunStatus.FAILED
    failed = await services.get_run(runtime, run.id)
    reason = "placement.hosts: 13 hosts is more than 4 per CPU; the cluster has 3 nodes with 3 CPUs"
    assert failed.error == f"DoesNotFit: {reason}"
    assert await runtime.live.hosts(run.id) == []  # nothing was placed


async def test_record_none_stores_rounds_but_no_actions(runtime):
    run = await services.submit(runtime, spec(rounds=2, record="none"))
    worker = Worker(runtime)
    await worker.drive(await worker.claim(run.id))
    async with runtime.sessions() as session:
        assert await records.count_actions(session, run_id=run.id) == 0
    assert len(await stored_stats(runtime, run.id)) == 2


async def test_a_run_taken_over_mid_way_ends_as_if_never_interrupted(runtime, settings, ray_cluster):
    """A worker process is SIGKILLed after round 2, leaving its lease behind; once the lease
    expires another worker resumes from the checkpoint."""
    run_spec = spec(
        rounds=6,
        **{
            "population.kinds": [
                {"kind": "adaptive", "share": 50},
                {"kind": "probe", "share": 50, "params": {"delay": 0.3}},
            ]
        },
    )
    run = await services.submit(runtime, run_spec)
    doomed = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "worker"],
        env=worker_env(settings, ray_cluster, MYRIAD_WORKER_ID="first", MYRIAD_LEASE_SECONDS="3"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        await wait_for_async(lambda: _round_at_least(runtime, run.id, 2), "round 2", 120, every=0.02)
    finally:
        os.killpg(doomed.pid, signal.SIGKILL)
        doomed.wait()
    assert (await services.get_run(runtime, run.id)).round < 6, "the run ended before the kill"

    second = Worker(runtime)  # the runtime's worker id is "test-worker"
    taken = await wait_for_async(lambda: second.claim(run.id), "the lost lease to expire", 30, every=0.5)
    assert taken.attempts == 2
    assert await second.drive(taken) == RunStatus.COMPLETED
    assert await stored_stats(runtime, run.id) == await uninterrupted(run_spec)
    async with runtime.sessions() as session:
        assert await records.count_actions(session, run_id=run.id) == 6 * 1000
        kinds = (await session.scalars(select(EventRow.kind).where(EventRow.run_id == run.id))).all()
        assert "resumed" in kinds


async def _round_at_least(rt: Runtime, run_id: int, round: int) -> bool:
    return (await services.get_run(rt, run_id)).round >= round


def worker_env(settings, ray_cluster, **extra: str) -> dict[str, str]:
    """The environment of a `myriad worker` process on the test's database, Redis and Ray cluster."""
    return os.environ | {
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "RAY_ADDRESS": ray_cluster.address,
        **extra,
    }


def cli(settings, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_pause_resume_inject_and_stop_from_another_process(runtime, settings):
    run = await services.submit(runtime, spec(rounds=200, **{"population.kinds": PROBES}))
    worker = Worker(runtime)
    driving = asyncio.create_task(worker.drive(await worker.claim(run.id)))
    await wait_for_async(lambda: _round_at_least(runtime, run.id, 1), "round 1", 120)

    paused = await asyncio.to_thread(cli, settings, "runs", "pause", str(run.id))
    assert paused.returncode == 0, paused.stderr
    await wait_for_async(lambda: _is(runtime, run.id, "paused"), "the run to pause", 120)
    at = (await services.get_run(runtime, run.id)).round
    await asyncio.sleep(1.5)  # five rounds' worth of time
    assert (await services.get_run(runtime, run.id)).round == at

    twice = await asyncio.to_thread(cli, settings, "runs", "pause", str(run.id))
    assert twice.returncode == 1
    assert "is paused; it cannot become paused" in twice.stderr

    injected = await asyncio.to_thread(
        cli, settings, "runs", "inject", str(run.id), "rates fall", "--where", "gender=female"
    )
    assert injected.returncode == 0, injected.stderr
    resumed = await asyncio.to_thread(cli, settings, "runs", "resume", str(run.id))
    assert resumed.returncode == 0, resumed.stderr
    await wait_for_async(lambda: _round_at_least(runtime, run.id, at + 2), f"round {at + 2}", 120)

    stopped = await asyncio.to_thread(cli, settings, "runs", "stop", str(run.id))
    assert stopped.returncode == 0, stopped.stderr
    assert await asyncio.wait_for(driving, 60) == RunStatus.STOPPED
    final = await services.get_run(runtime, run.id)
    assert final.status == "stopped"
    assert final.round < 200
    async with runtime.sessions() as session:
        events = (
            await session.scalars(select(EventRow).where(EventRow.run_id == run.id).order_by(EventRow.id))
        ).all()
    kinds = [e.kind for e in events]
    assert kinds.index("paused") < kinds.index("injected") < kinds.index("resumed") < kinds.index("stopped")
    assert next(e for e in events if e.kind == "injected").payload["where"] == {"gender": "female"}
    with pytest.raises(IllegalTransition, match="is stopped; it cannot become running"):
        await services.control(runtime, run.id, "resume")


async def test_the_command_log_is_read_when_the_live_layer_says_a_command_came(runtime, monkeypatch):
    """Reading the log at every round boundary cost 5-7 ms, half a round of a million agents: it
    is read when the API says it sent a command (applied at the next boundary, as before), and at
    least once a second (a command whose word to Redis was lost is not lost)."""
    reads = 0
    read_log = commands.pending_commands

    async def counted(session, *, run_id: int):
        nonlocal reads
        reads += 1
        return await read_log(session, run_id=run_id)

    monkeypatch.setattr(commands, "pending_commands", counted)
    run = await services.submit(runtime, spec(rounds=80))
    counting: dict[str, float] = {}

    async def after(result) -> None:
        if result.round == 10:
            counting.update(reads=reads, since=time.monotonic())
        elif result.round == 60:
            counting.update(reads=reads - counting["reads"], seconds=time.monotonic() - counting["since"])
            await services.control(runtime, run.id, "pause")

    worker = Worker(runtime)
    driving = asyncio.create_task(worker.drive(await worker.claim(run.id), on_round=after))
    await wait_for_async(lambda: _is(runtime, run.id, "paused"), "the run to pause", 120)
    assert (await services.get_run(runtime, run.id)).round == 60  # at the boundary it was sent before
    assert counting["reads"] <= counting["seconds"] + 2, counting  # 50 boundaries, read about once a second

    async with runtime.sessions() as session:  # a resume the live layer never heard of
        await commands.add_command(session, run_id=run.id, action="resume", payload={})
        await session.commit()
    assert await asyncio.wait_for(driving, 60) == RunStatus.COMPLETED


async def _is(rt: Runtime, run_id: int, status: str) -> bool:
    return await status_of(rt, run_id) == status


async def test_a_queued_run_stops_at_once_and_unknown_runs_are_named(runtime):
    run = await services.submit(runtime, spec())
    stopped = await services.control(runtime, run.id, "stop")
    assert stopped.status == "stopped"
    with pytest.raises(services.RunNotFound, match="run 999999 not found"):
        await services.control(runtime, 999_999, "pause")
    with pytest.raises(ValueError, match="unknown action 'jump'"):
        await services.control(runtime, run.id, "jump")


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_killed_worker_is_taken_over_without_duplicate_actions(runtime, settings, ray_cluster):
    """100,000 agents, every action recorded in Postgres; the driving worker is SIGKILLed after
    round 2 and a second worker process finishes the run."""
    run_spec = spec(
        rounds=5,
        **{
            "population.total": 100_000,
            "population.kinds": [{"kind": "adaptive", "share": 50}, {"kind": "level_k", "share": 50}],
        },
    )
    run = await services.submit(runtime, run_spec)
    env = worker_env(settings, ray_cluster, MYRIAD_LEASE_SECONDS="3", MYRIAD_POLL_SECONDS="0.2")

    def start_worker(name: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "worker"],
            env=env | {"MYRIAD_WORKER_ID": name},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    first = start_worker("doomed")
    try:
        await wait_for_async(lambda: _round_at_least(runtime, run.id, 2), "round 2", 180, every=0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        second = start_worker("rescuer")
        try:
            await wait_for_async(
                lambda: _is(runtime, run.id, "completed"), "the rescuer to finish", 300, every=0.5
            )
        finally:
            os.killpg(second.pid, signal.SIGTERM)
            second.wait(timeout=60)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    done = await services.get_run(runtime, run.id)
    assert (done.attempts, done.lease_owner) == (2, None)
    assert await stored_stats(runtime, run.id) == await uninterrupted(run_spec)
    async with runtime.sessions() as session:
        total = await records.count_actions(session, run_id=run.id)
        stored = actions.chunks(session, run_id=run.id)
        distinct = {(c.round, a) async for c, _ in stored for a in c.ids.tolist()}
    assert total == len(distinct) == 5 * 100_000


async def test_sigterm_hands_the_run_back_at_a_round_boundary(runtime, settings, ray_cluster):
    run_spec = spec(rounds=12, **{"population.kinds": PROBES})
    run = await services.submit(runtime, run_spec)
    env = worker_env(settings, ray_cluster, MYRIAD_WORKER_ID="leaving")
    worker = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "worker"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        await wait_for_async(lambda: _round_at_least(runtime, run.id, 2), "round 2", 120)
        worker.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(worker.communicate, timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, stderr
    assert "drove 1 run(s)" in stderr
    handed = await services.get_run(runtime, run.id)
    assert (handed.status, handed.lease_owner) == ("running", None)
    async with runtime.sessions() as session:
        assert await records.latest_checkpoint(session, run_id=run.id, at_most=handed.round) is not None
        kinds = (await session.scalars(select(EventRow.kind).where(EventRow.run_id == run.id))).all()
    assert kinds[-1] == "released"
    successor = Worker(runtime)
    assert await successor.drive(await successor.claim(run.id)) == RunStatus.COMPLETED
    assert await stored_stats(runtime, run.id) == await uninterrupted(run_spec)


async def test_a_run_that_failed_mid_way_is_resumed_from_its_checkpoint_identical(runtime, monkeypatch):
    """Round 4 of the run fails (a bug in its scenario, which this worker runs in-process): the
    run is failed at round 3, the failure recorded at that round, and the worker lives on. Once
    fixed, `resume` queues it again and it goes on from its last checkpoint to the same results
    as an unbroken run."""
    run_spec = spec(rounds=6)
    run = await services.submit(runtime, run_spec)
    worker = Worker(runtime)
    apply = GuessTwoThirds.apply

    def breaks_in_round_4(self, round, actions):  # type: ignore[no-untyped-def]
        if round == 4:
            raise RuntimeError("the scenario broke")
        return apply(self, round, actions)

    with monkeypatch.context() as patched:
        patched.setattr(GuessTwoThirds, "apply", breaks_in_round_4)
        assert await worker.drive(await worker.claim(run.id)) == RunStatus.FAILED
    failed = await services.get_run(runtime, run.id)
    assert (failed.status, failed.round) == ("failed", 3)
    assert "the scenario broke" in failed.error
    resumed = await services.control(runtime, run.id, "resume")
    assert (resumed.status, resumed.error) == ("queued", None)
    assert await worker.drive(await worker.claim(run.id)) == RunStatus.COMPLETED
    assert await stored_stats(runtime, run.id) == await uninterrupted(run_spec)
    async with runtime.sessions() as session:
        events = (
            await session.scalars(select(EventRow).where(EventRow.run_id == run.id).order_by(EventRow.id))
        ).all()
        assert await records.count_actions(session, run_id=run.id) == 6 * 1000
    history = [(e.kind, e.round) for e in events if e.kind not in ("round", "messages")]
    assert history[:3] == [("queued", 0), ("started", 0), ("failed", 3)]
    assert history[3:6] == [("resume requested", 3), ("resumed", 3), ("started", 3)]
    assert history[-1] == ("completed", 6)
    assert [e.round for e in events if e.kind == "round"] == [1, 2, 3, 4, 5, 6]
