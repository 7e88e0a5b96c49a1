"""`myriad runs …` (list, inspect, control and export runs) and `myriad db`."""

from __future__ import annotations

from pathlib import Path

import click

from agents.scenarios import RoundResult
from backend import services
from backend.cli.main import async_command, console, main
from backend.cli.tables import cells, line
from backend.runtime import Runtime
from backend.settings import Settings
from backend.store.db import migrate


@main.group()
def runs() -> None:
    """List, inspect, control and export runs."""


@runs.command("list")
@click.option("--status", help="only runs with this status")
@click.option("--limit", default=50, show_default=True)
@async_command
async def runs_list(status: str | None, limit: int) -> None:
    async with Runtime(Settings()) as rt:
        found = await services.list_runs(rt, limit=limit, status=status)
    console.print(line(["id", "status", "round", "rounds", "agents"]) + "  name", style="bold")
    for r in found:
        console.print(line([str(r.id), r.status, str(r.round), str(r.rounds), str(r.agents)]) + f"  {r.name}")


@runs.command("show")
@click.argument("run_id", type=int)
@async_command
async def runs_show(run_id: int) -> None:
    async with Runtime(Settings()) as rt:
        r = await services.get_run(rt, run_id)
        rows = await services.rounds(rt, run_id)
    console.print(
        f"run {r.id} {r.name!r}: {r.status}, round {r.round}/{r.rounds}, {r.agents:,} agents, seed {r.seed}"
    )
    if r.error:
        console.print(f"error: {r.error}", markup=False)
    if rows:
        names = tuple(rows[0].stats)
        console.print(line(["round", *names, "time", "failed"]), style="bold")
        for row in rows:
            result = RoundResult(row.round, row.stats, time=row.time, failures=row.failures)
            console.print(line(cells(result, names)), highlight=False)


@runs.command("export")
@click.argument("run_id", type=int)
@click.option("--table", type=click.Choice(services.EXPORT_TABLES), default="rounds", show_default=True)
@click.option("--format", "fmt", type=click.Choice(services.EXPORT_FORMATS), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="file [run-ID-TABLE.FORMAT]")
@async_command
async def runs_export(
    run_id: int, table: services.ExportTable, fmt: services.ExportFormat, out: Path | None
) -> None:
    out = out or Path(f"run-{run_id}-{table}.{fmt}")
    async with Runtime(Settings()) as rt:
        count = await services.export(rt, run_id, table=table, format=fmt, out=out)
    click.echo(f"{count} {table} rows written to {out}")


def _control(action: str) -> click.Command:
    @click.argument("run_id", type=int)
    @async_command
    async def command(run_id: int) -> None:
        async with Runtime(Settings()) as rt:
            r = await services.control(rt, run_id, action)
        click.echo(
            f"run {run_id}: {action} {'done' if action == 'stop' and r.status == 'stopped' else 'sent'}"
        )

    command.__doc__ = f"{action.capitalize()} a run at its next round boundary."
    return runs.command(action)(command)


for _action in ("pause", "resume", "stop"):
    _control(_action)


@runs.command("inject")
@click.argument("run_id", type=int)
@click.argument("content")
@click.option("--where", multiple=True, metavar="ATTR=VALUE", help="only agents with this attribute value")
@click.option("--public", is_flag=True, help="add to everyone's public information instead of inboxes")
@async_command
async def runs_inject(run_id: int, content: str, where: tuple[str, ...], public: bool) -> None:
    """Deliver CONTENT to the run's agents in its next round."""
    pairs = [w.split("=", 1) for w in where]
    if any(len(p) != 2 for p in pairs):
        raise ValueError("--where takes ATTR=VALUE")
    async with Runtime(Settings()) as rt:
        await services.control(
            rt, run_id, "inject", content=content, where=dict(pairs) or None, public=public
        )
    click.echo(f"run {run_id}: injection sent")


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Migrate the database at DATABASE_URL to REVISION."""
    settings = Settings()
    migrate(settings.database_url, revision)
    click.echo(f"database migrated to {revision}")
