"""Experiments on a real Ray cluster, with SQLite and the real Postgres and Redis: every run of a
2 × 3 grid, twice each, is driven to its end `max_parallel` at a time; its results table is the
runs' own statistics; the same spec run twice gives the same results; the whole experiment
pauses, resumes and stops."""

import asyncio
import contextlib
import csv

import pytest

from agents.experiment import ExperimentSpec
from backend import services
from backend.domain import FINAL, IllegalTransition, RunStatus
from backend.runtime import Runtime
from backend.store.models import RoundRow
from backend.workflow.budget import experiment_spent
from backend.workflow.worker import Worker
from tests.conftest import spec_data, stub_model
from tests.waiting import wait_for_async

pytestmark = pytest.mark.usefixtures("ray_cluster")


def experiment(**changes) -> ExperimentSpec:
    base = spec_data(rounds=3, placement={"hosts": 1}, **{"population.total": 200})
    return ExperimentSpec.parse(
        {
            "name": "grid",
            "base": base,
            "vary": {
                "scenario.params.ratio": ["2/3", "1/2"],
                "population.kinds.3.params.rate": [0.2, 0.5, 0.9],
            },
            "replicates": 2,
            "seed": 11,
            "max_parallel": 3,
            **changes,
        }
    )


@contextlib.asynccontextmanager
async def working(rt: Runtime, experiment_id: int):
    """A worker serving in the background, as `myriad serve`'s does, and the most runs of the
    experiment seen going (running or paused) at once."""
    stop = asyncio.Event()
    seen = {"most": 0}

    async def watch() -> None:
        while not stop.is_set():
            runs = await services.runs_of(rt, experiment_id)
            seen["most"] = max(seen["most"], sum(r.status in ("running", "paused") for r in runs))
            await asyncio.sleep(0.05)

    serving = asyncio.gather(Worker(rt).serve(stop), watch())
    try:
        yield seen
    finally:
        stop.set()
        await serving


async def ended(rt: Runtime, experiment_id: int, timeout: float = 240) -> list:
    async def done():
        runs = await services.runs_of(rt, experiment_id)
        return runs if all(r.status in FINAL for r in runs) else None

    return await wait_for_async(done, f"experiment {experiment_id} to end", timeout)


async def status(rt: Runtime, experiment_id: int) -> str:
    experiment = await services.get_experiment(rt, experiment_id)
    return (await services.experiment_progress(rt, experiment))["status"]


async def table(rt: Runtime, experiment_id: int) -> list[dict]:
    return [row async for batch in services.results(rt, experiment_id) for row in batch]


async def test_a_grid_with_replicates_runs_to_the_end_at_most_max_parallel_at_a_time(runtime, tmp_path):
    spec = experiment()
    created, runs = await services.submit_experiment(runtime, spec)
    assert len(runs) == 2 * 3 * 2
    assert [(r.cell, r.replicate) for r in runs] == [(c, p) for c in range(6) for p in range(2)]
    # Replicates share their seeds across cells (the same draws in every cell), and differ.
    seeds = {(r.cell, r.replicate): r.seed for r in runs}
    assert all(seeds[(c, p)] == seeds[(0, p)] for c in range(6) for p in range(2))
    assert seeds[(0, 0)] != seeds[(0, 1)]
    async with working(runtime, created.id) as seen:
        done = await ended(runtime, created.id)
    assert {r.status for r in done} == {RunStatus.COMPLETED}
    assert 1 < seen["most"] <= 3  # side by side, never more than max_parallel
    assert await status(runtime, created.id) == "completed"

    # The results table is the runs' own statistics, one row per run and round, with the factors.
    rows = await table(runtime, created.id)
    assert len(rows) == 12 * 3
    for run in done:
        own = await services.rounds(runtime, run.id, details=False)
        mine = [r for r in rows if r["run"] == run.id]
        assert [r["round"] for r in mine] == [1, 2, 3]
        assert [{k: r[k] for k in own[0].stats} for r in mine] == [o.stats for o in own]
        cell = spec.cells()[run.cell].values
        assert all(r["scenario.params.ratio"] == cell["scenario.params.ratio"] for r in mine)
        rate = "population.kinds.3.params.rate"
        assert all(r[rate] == cell[rate] for r in mine)
        assert {r["seed"] for r in mine} == {run.seed}

    # The same table as a file.
    path = await services.export_results(runtime, created.id, format="csv")
    try:
        with path.open(encoding="utf-8") as f:
            read = list(csv.DictReader(f))
    finally:
        services.remove_export(path)
    assert len(read) == len(rows)
    assert float(read[0]["avg"]) == pytest.approx(rows[0]["avg"])

    # The comparison: a band per cell, and the factors' effects from the completed runs.
    compared = await services.experiment_comparison(runtime, created.id)
    assert compared["measure"] == "avg"
    assert len(compared["series"]) == 6
    first = compared["series"][0]
    finals = [r["avg"] for r in rows if r["cell"] == 0 and r["round"] == 3]
    assert first["band"]["mean"][-1] == pytest.approx(sum(finals) / 2)
    assert first["band"]["low"][-1] <= first["band"]["mean"][-1] <= first["band"]["high"][-1]
    assert sum(first["histogram"]) == 2 * 200  # both replicates' answers in their last round
    ratio, rates = compared["effects"]
    assert ratio["factor"] == "scenario.params.ratio"
    assert [lv["runs"] for lv in ratio["levels"]] == [6, 6]
    assert ratio["levels"][0]["difference"] is None
    half = [r["avg"] for r in rows if r["round"] == 3 and r["scenario.params.ratio"] == "1/2"]
    whole = [r["avg"] for r in rows if r["round"] == 3 and r["scenario.params.ratio"] == "2/3"]
    assert ratio["levels"][1]["difference"] == pytest.approx(sum(half) / 6 - sum(whole) / 6)
    assert [lv["level"] for lv in rates["levels"]] == ["0.2", "0.5", "0.9"]

    # The same spec again: the same results, run for run.
    again, _ = await services.submit_experiment(runtime, spec)
    async with working(runtime, again.id):
        await ended(runtime, again.id)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("run", "time")} for r in rows]  # noqa: E731
    assert strip(await table(runtime, again.id)) == strip(rows)


async def test_a_whole_experiment_pauses_resumes_and_stops(runtime):
    probes = [{"kind": "probe", "share": 100, "params": {"delay": 0.2}}]
    base = spec_data(rounds=200, placement={"hosts": 1}, **{"population.kinds": probes})
    spec = ExperimentSpec.parse({"base": base, "vary": {"seed": [1, 2, 3]}, "max_parallel": 2})
    created, _ = await services.submit_experiment(runtime, spec)
    async with working(runtime, created.id):

        async def statuses(*wanted: str):
            found = [r.status for r in await services.runs_of(runtime, created.id)]
            return found if sorted(found) == sorted(wanted) else None

        await wait_for_async(lambda: statuses("running", "running", "queued"), "two runs to start", 60)
        await services.control_experiment(runtime, created.id, "pause")
        await wait_for_async(lambda: statuses("paused", "paused", "queued"), "the runs to pause", 60)
        await asyncio.sleep(2)  # the third run does not start while the experiment is paused
        assert await statuses("paused", "paused", "queued")
        assert await status(runtime, created.id) == "paused"

        await services.control_experiment(runtime, created.id, "resume")
        await wait_for_async(lambda: statuses("running", "running", "queued"), "the runs to resume", 60)
        await services.control_experiment(runtime, created.id, "stop")
        await wait_for_async(lambda: statuses("stopped", "stopped", "stopped"), "every run to stop", 60)
    assert await status(runtime, created.id) == "stopped"
    with pytest.raises(IllegalTransition, match="has ended"):
        await services.control_experiment(runtime, created.id, "resume")


async def test_an_experiment_budget_pauses_all_its_runs_and_holds_the_queued_ones(runtime, llm_stub):
    model = stub_model(llm_stub.url)
    kinds = [{"kind": "llm_guess", "share": 100, "params": {"model": "stub", "turn_timeout": 5}}]
    base = spec_data(
        rounds=30,
        placement={"hosts": 1, "agent_timeout": 10},
        llm={"models": {"stub": model}},
        **{"population.total": 20, "population.kinds": kinds},
    )
    # About 20 agents × 2 runs × a few dozen tokens a round: spent within a few rounds.
    spec = ExperimentSpec.parse(
        {"base": base, "vary": {"seed": [1, 2, 3]}, "max_parallel": 2, "budget": {"tokens": 5_000}}
    )
    created, _ = await services.submit_experiment(runtime, spec)
    async with working(runtime, created.id):

        async def held():
            runs = await services.runs_of(runtime, created.id)
            return runs if sorted(r.status for r in runs) == ["paused", "paused", "queued"] else None

        runs = await wait_for_async(held, "the budget to pause the runs", 120)
        assert await status(runtime, created.id) == "paused"
        for run in runs[:2]:
            [(_, reason)] = [
                (e.kind, e.payload["reason"])
                for e in await services.events(runtime, run.id, limit=100)
                if e.kind == "budget"
            ]
            assert reason.startswith("the experiment's token budget is spent (")
        with pytest.raises(services.BudgetSpent, match="the experiment's token budget is spent"):
            await services.control_experiment(runtime, created.id, "resume")
        # One of its runs alone cannot go on either, even with a budget of its own.
        with pytest.raises(
            services.BudgetSpent, match=f"resume experiment {created.id} with a larger budget"
        ):
            await services.control(runtime, runs[0].id, "resume", budget={"tokens": 10_000_000})
        await services.control_experiment(runtime, created.id, "resume", budget={"tokens": 10_000_000})
        await ended(runtime, created.id, timeout=240)
    assert await status(runtime, created.id) == "completed"


async def test_an_experiment_budget_counts_its_runs_together(runtime, llm_stub):
    """Each run under the budget, the two together over it: spent."""
    model = stub_model(llm_stub.url, price={"prompt": 1.0, "completion": 1.0})
    kinds = [{"kind": "llm_guess", "share": 100, "params": {"model": "stub"}}]
    base = spec_data(llm={"models": {"stub": model}}, **{"population.total": 20, "population.kinds": kinds})
    spec = ExperimentSpec.parse({"base": base, "vary": {"seed": [1, 2]}, "budget": {"tokens": 5_000}})
    created, runs = await services.submit_experiment(runtime, spec)
    used = {"stub": {"calls": 10, "failed": 0, "prompt_tokens": 2_000, "completion_tokens": 1_000}}
    async with runtime.sessions() as session:
        assert await experiment_spent(session, experiment_id=created.id) is None
        session.add(
            RoundRow(run_id=runs[0].id, round=1, stats={}, details={}, time=0.1, failures=0, usage=used)
        )
        await session.commit()
        assert await experiment_spent(session, experiment_id=created.id) is None  # 3,000 of 5,000
        session.add(
            RoundRow(run_id=runs[1].id, round=1, stats={}, details={}, time=0.1, failures=0, usage=used)
        )
        await session.commit()
        assert await experiment_spent(session, experiment_id=created.id) == (
            "the experiment's token budget is spent (6,000 of 5,000)"
        )
    # Not left queued in the shared database, for another test's worker to take.
    await services.control_experiment(runtime, created.id, "stop")
    assert {r.status for r in await services.runs_of(runtime, created.id)} == {"stopped"}


async def test_the_results_table_keeps_each_runs_seed_and_one_type_a_column(runtime):
    """A factor named like a column of the table (`seed`) has a column of its own; a factor whose
    values mix text and numbers is text throughout, so that Parquet takes it."""
    import pyarrow.parquet as pq

    base = spec_data(rounds=1, placement={"hosts": 1}, **{"population.total": 50})
    vary = {"seed": [1, 2], "scenario.params.ratio": ["2/3", 0.5]}
    spec = ExperimentSpec.parse({"base": base, "vary": vary, "replicates": 2})
    created, runs = await services.submit_experiment(runtime, spec)
    async with working(runtime, created.id):
        await ended(runtime, created.id)
    rows = await table(runtime, created.id)
    assert [(r["seed"], r["vary.seed"]) for r in rows] == [
        (run.seed, spec.cells()[run.cell].values["seed"]) for run in runs
    ]
    assert len({r["seed"] for r in rows}) == 4  # each replicate its own seed, not the cell's
    assert {r["scenario.params.ratio"] for r in rows} == {"2/3", "0.5"}
    path = await services.export_results(runtime, created.id, format="parquet")
    try:
        read = pq.read_table(path).to_pylist()
    finally:
        services.remove_export(path)
    assert [r["seed"] for r in read] == [r["seed"] for r in rows]
    assert [r["scenario.params.ratio"] for r in read] == [r["scenario.params.ratio"] for r in rows]
