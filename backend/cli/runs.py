"""`myriad runs …` (list, inspect, control and export runs) and `myriad db`.

The commands that only read (`list`, `show`, `export`, `db`) open the database alone: no live
layer, no Ray, no engine, so they answer in a fraction of a second.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from agents.spec import Budget
from backend import services
from backend.cli.main import async_command, console, main
from backend.cli.tables import cells, round_table, runs_table
from backend.domain import EventKind
from backend.runtime import Runtime
from backend.settings import Settings

__all__ = ["go_on", "paused_because", "raised_budget"]


@main.group()
def runs() -> None:
    """List, inspect, control and export runs."""


def _reading() -> Runtime:
    return Runtime(Settings(), live=False)


@runs.command("list")
@click.option("--status", help="only runs with this status")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 500))
@async_command
async def runs_list(status: str | None, limit: int) -> None:
    """List the runs, newest first."""
    async with _reading() as rt:
        found = await services.list_runs(rt, limit=limit, status=status)
    if not found:
        console.print("no runs" + (f" with status {status}" if status else ""), highlight=False)
        return
    console.print(runs_table(found))


def paused_because(events: list[tuple[str, dict[str, Any]]]) -> str | None:
    """Why a paused run paused, from its events newest first: a spent budget (with the numbers)
    or a user's pause."""
    for kind, payload in events:
        if kind == EventKind.BUDGET:
            return str(payload.get("reason") or "its budget is spent").removesuffix(": raise it to resume")
        if kind == EventKind.PAUSED:
            return "a user paused it"
        if kind in (EventKind.RESUMED, EventKind.STARTED):
            return None
    return None


def go_on(run_id: int, budget: bool) -> str:
    """How to go on with a paused run, as a command to type."""
    if budget:
        return f"to go on: myriad runs resume {run_id} --budget-tokens N (or --budget-cost C)"
    return f"to go on: myriad runs resume {run_id}"


@runs.command("show")
@click.argument("run_id", type=int)
@async_command
async def runs_show(run_id: int) -> None:
    """Show a run: its status, budget, use and rounds."""
    from agents.spec import RunSpec

    async with _reading() as rt:
        r = await services.get_run(rt, run_id)
        rows = await services.rounds(rt, run_id, details=False)
        spec = RunSpec.stored(r.spec)
        usage = await services.usage(rt, spec, run_id, rows) if spec.llm is not None else None
        recent = [(e.kind, e.payload) for e in await services.events(rt, run_id, limit=50)]
    console.print(
        f"run {r.id} {r.name!r}: {r.status}, round {r.round:,} of {r.rounds:,}, {r.agents:,} agents, "
        f"seed {r.seed}",
        highlight=False,
        markup=False,
    )
    if r.experiment_id is not None:
        console.print(
            f"replicate {(r.replicate or 0) + 1} of cell {(r.cell or 0) + 1} of experiment {r.experiment_id} "
            f"(myriad experiments show {r.experiment_id})",
            highlight=False,
        )
    if r.error:
        console.print(f"error: {r.error}", markup=False, highlight=False)
    if usage is not None:
        total = usage["total"]
        limit = ""
        if spec.budget is not None:
            parts = [f"{spec.budget.tokens:,} tokens" if spec.budget.tokens else "", ""]
            parts[1] = f"cost {spec.budget.cost:g}" if spec.budget.cost else ""
            limit = f" (budget: {', '.join(p for p in parts if p)})"
        console.print(f"used: {total['tokens']:,} tokens, cost {total['cost']:.4f}{limit}", highlight=False)
        calls = sum(u.get("calls", 0) for u in usage["models"].values())
        if saved := sum(u.get("saved", 0) for u in usage["models"].values()):
            said = f"calls: {calls:,} instead of {calls + saved:,} (archetypes saved {saved:,})"
            console.print(said, highlight=False)
    if r.status == "paused" and (why := paused_because(recent)) is not None:
        console.print(f"paused: {why}", highlight=False, markup=False)
        console.print(go_on(r.id, budget="budget" in why), highlight=False, markup=False)
    if rows:
        names = tuple(rows[0].stats)
        table = round_table(names, (cells(x.round, x.stats, names, x.time, x.failures) for x in rows))
        console.print(table, highlight=False)


@runs.command("export")
@click.argument("run_id", type=int)
@click.option("--table", type=click.Choice(services.EXPORT_TABLES), default="rounds", show_default=True)
@click.option("--format", "fmt", type=click.Choice(services.EXPORT_FORMATS), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="file [run-ID-TABLE.FORMAT]")
@async_command
async def runs_export(
    run_id: int, table: services.ExportTable, fmt: services.ExportFormat, out: Path | None
) -> None:
    """Write one table of a run (rounds, actions, agents or events) to a file."""
    out = out or Path(f"run-{run_id}-{table}.{fmt}")
    async with _reading() as rt:
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


for _action in ("pause", "stop"):
    _control(_action)


@runs.command("resume")
@click.argument("run_id", type=int)
@click.option("--budget-tokens", type=click.IntRange(min=1), metavar="N", help="a new token budget")
@click.option(
    "--budget-cost", type=click.FloatRange(min=0, min_open=True), metavar="C", help="a new cost budget"
)
@async_command
async def runs_resume(run_id: int, budget_tokens: int | None, budget_cost: float | None) -> None:
    """Resume a paused run at its next round boundary (a failed one from its last checkpoint).

    A run paused because it spent its budget goes on only with a larger one: --budget-tokens
    and --budget-cost replace the token and cost limits (a limit not given stays as it was).
    """
    from agents.spec import RunSpec

    async with Runtime(Settings()) as rt:
        budget = None
        if budget_tokens is not None or budget_cost is not None:
            old = RunSpec.stored((await services.get_run(rt, run_id)).spec).budget
            budget = raised_budget(old, budget_tokens, budget_cost)
        await services.control(rt, run_id, "resume", budget=budget)
    raised = f" with a budget of {_budget_text(budget)}" if budget else ""
    click.echo(f"run {run_id}: resume sent{raised}")


def raised_budget(old: Budget | None, tokens: int | None, cost: float | None) -> dict[str, Any]:
    """The budget a resume brings: `old` with the limits given replaced (one not given stays)."""
    budget = old.model_dump() if old is not None else {}
    return budget | {k: v for k, v in (("tokens", tokens), ("cost", cost)) if v is not None}


def _budget_text(budget: dict[str, Any]) -> str:
    parts = []
    if budget.get("tokens"):
        parts.append(f"{budget['tokens']:,} tokens")
    if budget.get("cost"):
        parts.append(f"cost {budget['cost']:g}")
    return " and ".join(parts)


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
    services.migrate(settings.database_url, revision)
    click.echo(f"database migrated to {revision}")
