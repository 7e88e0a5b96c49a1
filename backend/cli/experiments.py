"""`myriad experiment run` (queue an experiment and follow it to its end) and `myriad experiments
list|show|export` (read them: the database alone, no Ray).

A worker alive on the same database (`myriad serve`'s, or a `myriad worker`) drives the runs;
with none, this process starts Ray and a worker of its own until the experiment has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from backend import services
from backend.cli.main import EXIT_PAUSED, async_command, console, fail, main, results_folder
from backend.cli.runs import raised_budget
from backend.runtime import Runtime
from backend.settings import Settings

__all__: list[str] = []

_FOLLOW_EVERY = 0.5  # seconds between looks at the experiment's progress
_ENDED = ("completed", "stopped", "failed")


@main.group()
def experiment() -> None:
    """Run an experiment: many runs of one spec, its factors varied."""


@experiment.command("run")
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--submit", is_flag=True, help="only queue its runs (for a worker) and exit")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="results folder [results/NAME-eID]"
)
@async_command
async def experiment_run(spec_path: Path, submit: bool, out: Path | None) -> None:
    """Queue the experiment in SPEC (YAML or JSON) and follow it to its end; then print each
    cell's final mean and each factor's effect, and write the tidy results table."""
    from agents.experiment import load_experiment
    from agents.spec import SpecError

    try:
        spec = load_experiment(spec_path)
    except SpecError as e:
        fail("\n".join([f"{spec_path}: invalid experiment spec", *(f"  {p}" for p in e.problems)]), code=2)
        return
    async with Runtime(Settings()) as rt:
        try:
            created, runs = await services.submit_experiment(rt, spec)
        except SpecError as e:  # refused: a model key not allowed, too big for the cluster
            fail("\n".join([f"{spec_path}: refused", *(f"  {p}" for p in e.problems)]), code=2)
            return
        agents = sum(r.agents for r in runs)
        console.print(
            f"experiment {created.id} queued: {len(runs)} runs ({agents:,} agents in all), "
            f"{spec.max_parallel} at a time",
            highlight=False,
        )
        if submit:
            return
        async with _worker(rt):
            status = await _follow(rt, created.id)
        if status == "paused":  # left so: a user's pause, or its budget spent
            why = await services.budget_spent(rt, created.id)
            console.print(
                f"experiment {created.id} paused{f': {why}' if why else ''}\n"
                f"to go on: myriad experiments resume {created.id}{' --budget-tokens N' if why else ''}",
                highlight=False,
                markup=False,
            )
            sys.exit(EXIT_PAUSED)
        console.print(f"experiment {created.id} {status}", highlight=False)
        await _summary(rt, created.id)
        folder = out or results_folder(spec.name, f"e{created.id}")
        folder.mkdir(parents=True, exist_ok=True)
        written = await services.export_results(rt, created.id, format="csv")
        shutil.move(written, folder / "results.csv")
        written.parent.rmdir()
        console.print(f"results: {folder / 'results.csv'}", highlight=False)


@contextlib.asynccontextmanager
async def _worker(rt: Runtime) -> AsyncIterator[None]:
    """A worker for the runs: the live ones on this database, or one in this process (with Ray)."""
    if await services.workers(rt):
        yield
        return
    from agents.cluster import RayCluster
    from backend.workflow.worker import Worker

    address = rt.settings.ray_address
    console.print("no worker is running (`myriad serve` starts one): driving the runs here", highlight=False)
    cluster = RayCluster(address)
    cluster.connect()
    stop = asyncio.Event()
    serving = asyncio.create_task(Worker(rt).serve(stop))
    try:
        yield
    finally:
        stop.set()
        await serving
        cluster.close()


async def _follow(rt: Runtime, experiment_id: int) -> str:
    """Show the experiment's progress until it has ended or paused; its status then."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("rounds", total=None)
        while True:
            experiment = await services.get_experiment(rt, experiment_id)
            progress = await services.experiment_progress(rt, experiment)
            by_status = progress["runs"]
            runs = ", ".join(f"{n} {status}" for status, n in sorted(by_status.items()))
            bar.update(task, total=progress["planned"], completed=progress["rounds"], description=runs)
            if progress["status"] in (*_ENDED, "paused"):
                return str(progress["status"])
            await asyncio.sleep(_FOLLOW_EVERY)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


async def _summary(rt: Runtime, experiment_id: int) -> None:
    """Each cell's final mean with its 95 % interval, and each factor's effect."""
    compared = await services.experiment_comparison(rt, experiment_id)
    cells = Table(
        box=None, header_style="bold", title=f"final {compared['measure']} by cell", title_justify="left"
    )
    for name, justify in (("cell", "left"), ("runs", "right"), ("mean", "right"), ("95% interval", "right")):
        cells.add_column(name, justify=justify)  # type: ignore[arg-type]
    for series in compared["series"]:
        band = series["band"]
        low, high = (band["low"][-1], band["high"][-1]) if band["rounds"] else (None, None)
        last = band["mean"][-1] if band["rounds"] else None
        cells.add_row(
            series["label"], str(len(series["runs"])), _number(last), f"{_number(low)} to {_number(high)}"
        )
    console.print(cells)
    for factor in compared.get("effects") or []:
        effects = Table(
            box=None, header_style="bold", title=f"effect of {factor['factor']}", title_justify="left"
        )
        for name in ("level", "runs", "mean", "difference", "95% interval"):
            effects.add_column(name, justify="left" if name == "level" else "right")
        for level in factor["levels"]:
            interval = (
                "reference"
                if level["difference"] is None
                else f"{_number(level['low'])} to {_number(level['high'])}"
            )
            effects.add_row(
                level["level"],
                str(level["runs"]),
                _number(level["mean"]),
                _number(level["difference"]),
                interval,
            )
        console.print(effects)


def _reading() -> Runtime:
    return Runtime(Settings(), live=False)


@main.group()
def experiments() -> None:
    """List, inspect and export experiments."""


@experiments.command("list")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@async_command
async def experiments_list(limit: int) -> None:
    """List the experiments, newest first."""
    async with _reading() as rt:
        found = await services.list_experiments(rt, limit=limit)
    if not found:
        console.print("no experiments")
        return
    table = Table(box=None, header_style="bold")
    for name, justify in (
        ("id", "right"),
        ("name", "left"),
        ("status", "left"),
        ("runs", "right"),
        ("rounds", "right"),
    ):
        table.add_column(name, justify=justify, no_wrap=name != "name")  # type: ignore[arg-type]
    for experiment, progress in found:
        runs = sum(progress["runs"].values())
        done = sum(n for status, n in progress["runs"].items() if status in _ENDED)
        rounds = f"{progress['rounds']:,}/{progress['planned']:,}"
        table.add_row(str(experiment.id), experiment.name, progress["status"], f"{done}/{runs}", rounds)
    console.print(table)


@experiments.command("show")
@click.argument("experiment_id", type=int)
@async_command
async def experiments_show(experiment_id: int) -> None:
    """Show an experiment: its cells and their runs, each cell's final mean, each factor's effect."""
    async with _reading() as rt:
        experiment = await _get(rt, experiment_id)
        progress = await services.experiment_progress(rt, experiment)
        cells = await services.cells(rt, experiment_id)
        console.print(
            f"experiment {experiment.id}: {experiment.name} — {progress['status']}, "
            f"{progress['rounds']:,} of {progress['planned']:,} rounds, "
            f"{experiment.max_parallel} runs at a time",
            highlight=False,
            markup=False,
        )
        grid = Table(box=None, header_style="bold")
        grid.add_column("cell")
        grid.add_column("runs (status, round)")
        for cell, runs in cells:
            grid.add_row(cell.label(), ", ".join(f"{r.id} ({r.status}, {r.round}/{r.rounds})" for r in runs))
        console.print(grid)
        await _summary(rt, experiment_id)


async def _get(rt: Runtime, experiment_id: int) -> Any:
    try:
        return await services.get_experiment(rt, experiment_id)
    except services.ExperimentNotFound as e:
        fail(str(e))


@experiments.command("export")
@click.argument("experiment_id", type=int)
@click.option(
    "--format", "format_", type=click.Choice(["csv", "json", "parquet"]), default="csv", show_default=True
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="file [experiment-ID-results.FORMAT]"
)
@async_command
async def experiments_export(experiment_id: int, format_: str, out: Path | None) -> None:
    """Write the tidy results table: one row per run and round, with its factors, replicate and seed."""
    async with _reading() as rt:
        await _get(rt, experiment_id)
        written = await services.export_results(rt, experiment_id, format=format_)  # type: ignore[arg-type]
    target = out or Path(written.name)
    shutil.move(written, target)
    written.parent.rmdir()
    console.print(f"wrote {target}", highlight=False)


def _control(action: str) -> click.Command:
    @click.argument("experiment_id", type=int)
    @async_command
    async def command(experiment_id: int) -> None:
        async with Runtime(Settings()) as rt:
            await _get(rt, experiment_id)
            await services.control_experiment(rt, experiment_id, action)
        click.echo(f"experiment {experiment_id}: {action} sent to its runs")

    command.__doc__ = {
        "pause": "Pause the experiment's running runs, and keep its queued ones from starting.",
        "stop": "Stop every run of the experiment that has not ended.",
    }[action]
    return experiments.command(action)(command)


for _action in ("pause", "stop"):
    _control(_action)


@experiments.command("resume")
@click.argument("experiment_id", type=int)
@click.option("--budget-tokens", type=click.IntRange(min=1), metavar="N", help="a new token budget")
@click.option(
    "--budget-cost", type=click.FloatRange(min=0, min_open=True), metavar="C", help="a new cost budget"
)
@async_command
async def experiments_resume(
    experiment_id: int, budget_tokens: int | None, budget_cost: float | None
) -> None:
    """Resume the experiment's paused runs and let its queued ones start.

    An experiment whose runs together spent its budget goes on only with a larger one:
    --budget-tokens and --budget-cost replace its limits (a limit not given stays as it was).
    """
    from agents.experiment import ExperimentSpec

    async with Runtime(Settings()) as rt:
        experiment = await _get(rt, experiment_id)
        budget = None
        if budget_tokens is not None or budget_cost is not None:
            budget = raised_budget(ExperimentSpec.stored(experiment.spec).budget, budget_tokens, budget_cost)
        await services.control_experiment(rt, experiment_id, "resume", budget=budget)
    click.echo(f"experiment {experiment_id}: resume sent to its runs")
