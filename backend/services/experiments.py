"""Experiments: submit one (all its runs queued at once), read it with its runs' progress,
control all its runs together, and compare them: the tidy results table, each cell's mean per
round with a confidence band, final answer distributions, and each factor's effect."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import select, tuple_

from agents.experiment import Cell, ExperimentSpec, shown
from agents.spec import Budget
from backend.domain import FINAL, EventKind, IllegalTransition, RunStatus
from backend.runtime import Runtime
from backend.services._live import announce
from backend.services.comparison import band, effect
from backend.services.exports import ExportFormat, in_temp_file, write_rows
from backend.services.runs import BudgetSpent, admit, control
from backend.store import experiments as store
from backend.store.models import ExperimentRow, RoundRow, Run
from backend.workflow.budget import experiment_spent

__all__ = [
    "ExperimentNotFound",
    "budget_spent",
    "cells",
    "compare",
    "control_experiment",
    "count_experiments",
    "experiment_comparison",
    "experiment_progress",
    "experiment_status",
    "export_results",
    "get_experiment",
    "list_experiments",
    "results",
    "runs_of",
    "submit_experiment",
]


class ExperimentNotFound(LookupError):
    def __init__(self, experiment_id: int) -> None:
        super().__init__(f"experiment {experiment_id} not found")


async def submit_experiment(rt: Runtime, spec: ExperimentSpec) -> tuple[ExperimentRow, list[Run]]:
    """Queue every run of the experiment, once each cell is admitted (its models allowed, its
    hosts fitting the cluster); workers start them `max_parallel` at a time."""
    planned = await asyncio.to_thread(spec.plan)  # up to 1,000 specs validated: off the loop
    for run in planned:
        if run.replicate == 0:  # replicates differ only by their seed
            await admit(rt, run.spec)
    async with rt.sessions() as session:
        experiment, runs = await store.create_experiment(session, spec=spec, planned=planned)
    await asyncio.gather(
        *(
            announce(
                rt,
                run.id,
                0,
                EventKind.QUEUED,
                {"name": run.name, "experiment": experiment.id},
                status=RunStatus.QUEUED,
                round=0,
                rounds=run.rounds,
                agents=run.agents,
            )
            for run in runs
        )
    )
    return experiment, runs


async def get_experiment(rt: Runtime, experiment_id: int) -> ExperimentRow:
    async with rt.sessions() as session:
        experiment = await store.get_experiment(session, experiment_id=experiment_id)
    if experiment is None:
        raise ExperimentNotFound(experiment_id)
    return experiment


async def list_experiments(
    rt: Runtime, *, limit: int = 50, offset: int = 0
) -> list[tuple[ExperimentRow, dict[str, Any]]]:
    """A page of experiments, newest first, each with its runs' progress (see `progress`)."""
    async with rt.sessions() as session:
        found = await store.list_experiments(session, limit=limit, offset=offset)
        progress = await store.progress(session, experiment_ids=[e.id for e in found])
    return [(e, progress[e.id] | {"status": experiment_status(e, progress[e.id])}) for e in found]


async def count_experiments(rt: Runtime) -> int:
    async with rt.sessions() as session:
        return await store.count_experiments(session)


async def experiment_progress(rt: Runtime, experiment: ExperimentRow) -> dict[str, Any]:
    """Its runs by status, rounds done and planned over them all, and its status."""
    async with rt.sessions() as session:
        progress = (await store.progress(session, experiment_ids=[experiment.id]))[experiment.id]
    return progress | {"status": experiment_status(experiment, progress)}


def experiment_status(experiment: ExperimentRow, progress: dict[str, Any]) -> str:
    """An experiment's status, from its runs': completed when all completed; stopped or failed
    when all ended and some did not complete; paused when paused; queued before any run started;
    running otherwise."""
    by_status: dict[str, int] = progress["runs"]
    runs = sum(by_status.values())
    if not runs:  # every run of it was deleted
        return "stopped"
    ended = sum(n for status, n in by_status.items() if status in FINAL)
    if runs and ended == runs:
        if by_status.get(RunStatus.COMPLETED) == runs:
            return "completed"
        return "stopped" if by_status.get(RunStatus.STOPPED) else "failed"
    if experiment.paused:
        return "paused"
    return "queued" if by_status.get(RunStatus.QUEUED) == runs else "running"


async def runs_of(rt: Runtime, experiment_id: int) -> Sequence[Run]:
    """The experiment's runs, cell by cell."""
    await get_experiment(rt, experiment_id)
    async with rt.sessions() as session:
        return await store.experiment_runs(session, experiment_id=experiment_id)


async def control_experiment(
    rt: Runtime, experiment_id: int, action: str, *, budget: dict[str, Any] | None = None
) -> ExperimentRow:
    """Pause, resume or stop all the experiment's runs. Pausing also keeps its queued runs from
    starting; resuming lets them start again, with `budget` the experiment's new budget (a
    resume that leaves its budget spent is refused: its runs would only pause again)."""
    experiment = await get_experiment(rt, experiment_id)
    if action not in ("pause", "resume", "stop"):
        raise ValueError(f"unknown action {action!r}; known: pause, resume, stop")
    if all(run.status in FINAL for run in await runs_of(rt, experiment_id)):
        raise IllegalTransition(f"experiment {experiment_id} has ended; it cannot {action}")
    async with rt.sessions() as session:
        if action == "resume":
            if budget is not None:
                raised = _spec(experiment).model_copy(update={"budget": Budget.model_validate(budget)})
                await store.set_spec(
                    session, experiment_id=experiment_id, spec=raised.model_dump(mode="json")
                )
            if reason := await experiment_spent(session, experiment_id=experiment_id):
                await session.rollback()
                raise BudgetSpent(
                    f"experiment {experiment_id} cannot resume: {reason}; resume it with a larger budget"
                )
        # Held first (to pause or to stop), so that no queued run starts while the others are
        # told; its runs read after that, so that a run a worker claimed meanwhile is told too.
        await store.set_paused(session, experiment_id=experiment_id, paused=action != "resume")
        await session.commit()
    going = {"pause": (RunStatus.RUNNING,), "resume": (RunStatus.PAUSED,)}
    for run in await runs_of(rt, experiment_id):
        if run.status in going.get(action, (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED)):
            # A run that ended meanwhile, or one paused with its own budget spent, stays as it is.
            with contextlib.suppress(IllegalTransition):
                await control(rt, run.id, action)
    return await get_experiment(rt, experiment_id)


async def budget_spent(rt: Runtime, experiment_id: int) -> str | None:
    """Why the experiment's runs together have reached its budget, if they have."""
    async with rt.sessions() as session:
        return await experiment_spent(session, experiment_id=experiment_id)


async def cells(rt: Runtime, experiment_id: int) -> list[tuple[Cell, list[Run]]]:
    """The experiment's cells, each with its runs (replicates in order)."""
    experiment = await get_experiment(rt, experiment_id)
    runs = await runs_of(rt, experiment_id)
    by_cell: dict[int | None, list[Run]] = defaultdict(list)
    for run in runs:
        by_cell[run.cell].append(run)
    return [(cell, by_cell[cell.index]) for cell in _spec(experiment).cells()]


async def experiment_comparison(
    rt: Runtime, experiment_id: int, *, measure: str | None = None
) -> dict[str, Any]:
    """`compare` of the experiment's runs, by cell, with each factor's effect."""
    experiment = await get_experiment(rt, experiment_id)
    return await compare(rt, await runs_of(rt, experiment_id), measure=measure, spec=_spec(experiment))


def _spec(experiment: ExperimentRow) -> ExperimentSpec:
    return ExperimentSpec.stored(experiment.spec)


# The table's own columns: a factor of the same name (`seed`) is written as `vary.seed`.
_FIXED = ("run", "cell", "replicate", "seed", "round", "time")


def _columns(spec: ExperimentSpec) -> dict[str, str]:
    """Each varied path's column in the results table."""
    return {p: f"vary.{p}" if p in _FIXED else p for f in spec.factors() for p in f.paths}


def _typed(spec: ExperimentSpec) -> dict[str, Callable[[Any], Any]]:
    """How each varied path's values are written: as numbers when all its values are numbers (a
    float column if any is), else as text (JSON for what is not text), so that each column has
    one type (Parquet requires it)."""

    def text(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    found: dict[str, Callable[[Any], Any]] = {}
    for factor in spec.factors():
        for i, path in enumerate(factor.paths):
            values = [level[i] for level in factor.levels]
            if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
                found[path] = float if any(isinstance(v, float) for v in values) else int
            else:
                found[path] = text
    return found


async def results(rt: Runtime, experiment_id: int) -> AsyncGenerator[list[dict[str, Any]]]:
    """The tidy results table in batches: one row per run and round, with the run's cell,
    replicate, seed and factor values, then the round's statistics and time."""
    experiment = await get_experiment(rt, experiment_id)
    spec = _spec(experiment)
    runs = await runs_of(rt, experiment_id)
    cells, columns, typed = spec.cells(), _columns(spec), _typed(spec)
    for start in range(0, len(runs), 100):
        batch = runs[start : start + 100]
        async with rt.sessions() as session:
            stats = await store.round_stats(session, run_ids=[r.id for r in batch])
        rows = []
        for run in batch:
            assert run.cell is not None
            factors = {columns[path]: typed[path](value) for path, value in cells[run.cell].values.items()}
            head = {"run": run.id, "cell": run.cell, "replicate": run.replicate, "seed": run.seed, **factors}
            rows += [head | {"round": r} | values | {"time": seconds} for r, values, seconds in stats[run.id]]
        if rows:  # a writer reads its columns from a batch's first row
            yield rows


async def export_results(rt: Runtime, experiment_id: int, *, format: ExportFormat) -> Path:
    """The results table in a file of its own (see `exports.in_temp_file`)."""
    experiment = await get_experiment(rt, experiment_id)
    spec = ExperimentSpec.stored(experiment.spec)
    header = ["run", "cell", "replicate", "seed", *_columns(spec).values(), "round", "time"]

    async def write(out: Path) -> int:
        return await write_rows(results(rt, experiment_id), format, out, header=header)

    return await in_temp_file(f"experiment-{experiment_id}-results.{format}", write)


async def compare(
    rt: Runtime, runs: Sequence[Run], *, measure: str | None = None, spec: ExperimentSpec | None = None
) -> dict[str, Any]:
    """What the comparison charts and the effects table are drawn from.

    With the experiment's spec, its runs are grouped by their cell; otherwise (runs chosen
    anywhere, of one experiment or not) each run is a group of its own. Per group: `measure`
    (default: the mean answer `avg` where the scenario records it, else its first statistic) by
    round as a band across replicates, the target `win` likewise where recorded, and the final
    round's answer histogram summed over replicates. With the
    experiment's spec, each factor's effect on the measure's final value (runs that completed)."""
    async with rt.sessions() as session:
        stats = await store.round_stats(session, run_ids=[r.id for r in runs])
        finals = await _final_details(session, runs)
    measure = measure or _default_measure(stats)
    groups: dict[Any, list[Run]] = defaultdict(list)
    one_experiment = len({r.experiment_id for r in runs}) == 1 and runs and runs[0].experiment_id is not None
    cells = spec.cells() if spec is not None and one_experiment else None
    for run in runs:
        groups[run.cell if cells is not None else run.id].append(run)
    series = []
    for key, members in groups.items():
        label = cells[key].label() if cells is not None else f"run {key}: {members[0].name}"
        by_round = [{r: s[measure] for r, s, _ in stats[m.id] if _number(s.get(measure))} for m in members]
        targets = [{r: s["win"] for r, s, _ in stats[m.id] if _number(s.get("win"))} for m in members]
        histograms = [finals[m.id] for m in members if m.id in finals]
        series.append(
            {
                "key": key,
                "label": label,
                "runs": [m.id for m in members],
                "band": asdict(band(by_round)),
                "target": asdict(band(targets)) if any(targets) else None,
                "histogram": [sum(h) for h in zip(*histograms, strict=True)] if histograms else None,
                "final_runs": len(histograms),
            }
        )
    found: dict[str, Any] = {"measure": measure, "series": series}
    if spec is not None:
        found["effects"] = _effects(spec, runs, _final_values(runs, stats, measure))
    return found


def _effects(spec: ExperimentSpec, runs: Sequence[Run], finals: dict[int, float]) -> list[dict[str, Any]]:
    """Each factor's levels against its first, by the final values of the runs that have one.
    Levels are told apart by position: a value may be a list or a mapping (a whole `kinds`)."""
    cells = spec.cells()
    table = []
    for factor in spec.factors():
        by_level: list[list[float]] = [[] for _ in factor.levels]
        for run in runs:
            if run.id in finals and run.cell is not None:
                level = tuple(cells[run.cell].values[p] for p in factor.paths)
                by_level[factor.levels.index(level)].append(finals[run.id])
        reference = by_level[0]
        rows = [
            asdict(effect(", ".join(shown(v) for v in level), values, reference))
            for i, (level, values) in enumerate(zip(factor.levels, by_level, strict=True))
            if values and (reference or i == 0)
        ]
        table.append({"factor": factor.name, "levels": rows})
    return table


def _final_values(
    runs: Sequence[Run], stats: dict[int, list[tuple[int, dict[str, Any], float]]], measure: str
) -> dict[int, float]:
    """The measure in the last round of each run that completed all its rounds."""
    found = {}
    for run in runs:
        last = stats.get(run.id) or []
        if last and last[-1][0] == run.rounds and _number(last[-1][1].get(measure)):
            found[run.id] = float(last[-1][1][measure])
    return found


def _number(value: Any) -> bool:
    """Whether a statistic can be averaged (a scenario may record text too; NaN is stored as null)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _default_measure(stats: dict[int, list[tuple[int, dict[str, Any], float]]]) -> str:
    for rounds in stats.values():
        for _, values, _ in rounds:
            numeric = [k for k, v in values.items() if _number(v)]
            return "avg" if "avg" in numeric else (numeric[0] if numeric else "avg")
    return "avg"


async def _final_details(session: Any, runs: Sequence[Run]) -> dict[int, list[int]]:
    """The answer histogram of each run's last stored round, where its scenario records one."""
    ended = [(r.id, r.round) for r in runs if r.round > 0]
    if not ended:
        return {}
    query = select(RoundRow.run_id, RoundRow.details).where(
        tuple_(RoundRow.run_id, RoundRow.round).in_(ended)
    )
    return {
        run_id: details["histogram"]
        for run_id, details in (await session.execute(query)).all()
        if isinstance(details.get("histogram"), list)
    }
