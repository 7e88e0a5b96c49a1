"""The `myriad` command."""

from __future__ import annotations

import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from agents.cluster import RayCluster
from agents.scenarios import RoundResult
from agents.simulation import Simulation
from agents.spec import RunSpec, SpecError, load_spec
from backend.results import write_results

console = Console(soft_wrap=True)


@click.group()
@click.version_option(package_name="myriad-sim")
def main() -> None:
    """Myriad: very large multi-agent simulations on Ray."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="results folder [results/NAME-TIME]"
)
@click.option("--hosts", type=click.IntRange(min=1), help="AgentHost actors, overriding the spec's placement")
@click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster to join [RAY_ADDRESS; default: start one]")
def run(spec_path: Path, out: Path | None, hosts: int | None, address: str | None) -> None:
    """Run the simulation in SPEC (YAML or JSON) and print each round's statistics."""
    try:
        spec = load_spec(spec_path)
        if hosts is not None:
            spec = RunSpec.parse(
                spec.model_dump() | {"placement": spec.placement.model_dump() | {"hosts": hosts}}
            )
    except SpecError as e:
        click.echo(f"{spec_path}: invalid run spec", err=True)
        for problem in e.problems:
            click.echo(f"  {problem}", err=True)
        sys.exit(2)
    out = out or Path("results") / f"{spec.name}-{datetime.now(UTC):%Y%m%d-%H%M%S}"
    asyncio.run(_run(spec, out, address))


async def _run(spec: RunSpec, out: Path, address: str | None) -> None:
    results: list[RoundResult] = []
    with RayCluster(address), _progress() as progress:
        task = progress.add_task("starting Ray", total=None)
        async with Simulation(spec) as sim:
            hosts = await sim.host_stats()
            nodes = len({h.node_id for h in hosts})
            console.print(
                f"{spec.population.total:,} agents on {len(hosts)} hosts across {nodes} node(s); "
                f"scenario {spec.scenario.name}, {spec.rounds} rounds, seed {spec.seed}"
            )
            names = sim.scenario.stat_names
            console.print(_line(["round", *names, "time", "failed"]), style="bold")
            progress.update(task, description="rounds", total=spec.rounds, completed=0)
            async for result in sim.rounds():
                results.append(result)
                console.print(_line(_cells(result, names)), highlight=False)
                progress.advance(task)
            hosts = await sim.host_stats()
    write_results(out, spec, results, hosts)
    console.print(f"results written to {out}/ (rounds.json, rounds.csv, hosts.json, spec.json)")


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


def _line(cells: list[str]) -> str:
    return " ".join(f"{c:>7}" for c in cells)


def _cells(result: RoundResult, stat_names: tuple[str, ...]) -> list[str]:
    def cell(value: float | int | None) -> str:
        if value is None:
            return "-"
        return str(value) if isinstance(value, int) else f"{value:.2f}"

    stats = [cell(result.stats.get(name)) for name in stat_names]
    return [str(result.round), *stats, f"{result.time:.2f}s", str(result.failures)]


if __name__ == "__main__":
    main()
