"""`myriad run`: a spec run in the terminal, round by round."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from agents.scenarios import RoundResult
from agents.spec import RunSpec, SpecError, load_spec
from backend import services
from backend.cli.main import console, fail, main
from backend.cli.tables import cells, line
from backend.runtime import Runtime
from backend.settings import Settings
from backend.workflow.worker import Worker

# -- run ------------------------------------------------------------------------------------------


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--submit", is_flag=True, help="only queue the run for `myriad worker`s")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="results folder [results/NAME-ID]"
)
@click.option("--hosts", type=click.IntRange(min=1), help="AgentHost actors, overriding the spec's placement")
@click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster to join [RAY_ADDRESS; default: start one]")
def run(spec_path: Path, submit: bool, out: Path | None, hosts: int | None, address: str | None) -> None:
    """Run the simulation in SPEC (YAML or JSON) here, printing each round's statistics."""
    try:
        spec = load_spec(spec_path)
        if hosts is not None:
            spec = RunSpec.parse(
                spec.model_dump() | {"placement": spec.placement.model_dump() | {"hosts": hosts}}
            )
        settings = Settings(ray_address=address) if address else Settings()
        asyncio.run(_submit(settings, spec) if submit else _run_here(settings, spec, out))
    except SpecError as e:  # invalid, or refused: a model key not allowed, too big for the cluster
        fail("\n".join([f"{spec_path}: invalid run spec", *(f"  {p}" for p in e.problems)]), code=2)


async def _submit(settings: Settings, spec: RunSpec) -> None:
    async with Runtime(settings) as rt:
        queued = await services.submit(rt, spec)
    console.print(f"run {queued.id} queued: {spec.population.total:,} agents, {spec.rounds} rounds")


async def _run_here(settings: Settings, spec: RunSpec, out: Path | None) -> None:
    with _progress() as progress:
        task = progress.add_task("starting", total=None)
        async with Runtime(settings, ray=True) as rt:
            queued = await services.submit(rt, spec)
            worker = Worker(rt)
            claimed = await worker.claim(queued.id)
            if claimed is None:
                fail(f"run {queued.id} was claimed by another worker")
                return
            console.print(
                f"run {queued.id}: {spec.population.total:,} agents; scenario {spec.scenario.name}, "
                f"{spec.rounds} rounds, seed {spec.seed}"
            )
            names: tuple[str, ...] = ()

            def show(result: RoundResult) -> None:
                nonlocal names
                if not names:
                    names = tuple(result.stats)
                    console.print(line(["round", *names, "time", "failed"]), style="bold")
                    progress.update(task, description="rounds", total=spec.rounds, completed=0)
                console.print(line(cells(result, names)), highlight=False)
                progress.advance(task)

            status = await worker.drive(claimed, on_round=show)
            folder = out or Path("results") / f"{spec.name}-{queued.id}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "spec.json").write_text(spec.model_dump_json(indent=2), encoding="utf-8")
            for fmt in ("json", "csv"):
                await services.export(rt, queued.id, table="rounds", format=fmt, out=folder / f"rounds.{fmt}")
    console.print(
        f"run {queued.id} {status}; results written to {folder}/ (rounds.json, rounds.csv, spec.json)"
    )
    if status != "completed":
        sys.exit(1)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
