"""`myriad survey` (put questions to a run's agents) and `myriad surveys …` (list, show, export).

A survey is asked by the process that received it: `myriad survey` asks it here, showing its
progress, and prints the answers counted when it ends. The commands that only read open the
database alone, as `myriad runs` does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from backend import services
from backend.cli.main import async_command, console, main
from backend.runtime import Runtime
from backend.settings import Settings

__all__ = ["survey_tables"]

POLL_SECONDS = 0.5


def _reading() -> Runtime:
    return Runtime(Settings(), live=False)


@main.command("survey")
@click.argument("run_id", type=int)
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--by", help="break the answers down by kind or an attribute")
@async_command
async def survey(run_id: int, spec: Path, by: str | None) -> None:
    """Put the questions of SPEC (YAML or JSON) to a sample of run RUN_ID's agents.

    The survey is asked from this process, at the run's latest recorded round; it reads only
    what the run has stored, so the run's results do not change. Ctrl-C stops it: it ends
    `interrupted`, with the answers so far."""
    from agents.survey import load_survey

    asked = load_survey(spec)
    async with Runtime(Settings()) as rt:  # the live layer: the survey says it is being asked
        created = await services.create_survey(rt, run_id, asked)
        console.print(
            f"survey {created.id} of run {run_id}: {len(asked.questions)} question(s) to "
            f"{created.agents:,} agents, at round {created.round}",
            highlight=False,
            markup=False,
        )
        try:
            await _follow(rt, run_id, created.id, created.agents * len(asked.questions))
        finally:
            await services.stop_surveys()
        await _show(rt, run_id, created.id, by)


async def _follow(rt: Runtime, run_id: int, survey_id: int, total: int) -> None:
    columns = (TextColumn("answers"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("answers", total=total)
        finished = asyncio.ensure_future(services.survey_finished(survey_id))
        while not finished.done():
            await asyncio.wait([finished], timeout=POLL_SECONDS)
            answered = await services.answered(rt, [survey_id])
            progress.update(bar, completed=answered.get(survey_id, 0))


async def _show(rt: Runtime, run_id: int, survey_id: int, by: str | None) -> None:
    found = await services.get_survey(rt, run_id, survey_id)
    answered = (await services.answered(rt, [survey_id])).get(survey_id, 0)
    counted = await services.aggregates(rt, found, by)
    line = f"survey {found.id} of run {run_id}: {found.status}, {answered:,} answers, {found.agents:,} agents"
    console.print(line + (f" ({found.error})" if found.error else ""), highlight=False, markup=False)
    for table in survey_tables(counted):
        console.print(table)


@main.group()
def surveys() -> None:
    """List, show and export a run's surveys."""


@surveys.command("list")
@click.argument("run_id", type=int)
@async_command
async def surveys_list(run_id: int) -> None:
    """List the run's surveys, newest first."""
    async with _reading() as rt:
        found = await services.list_surveys(rt, run_id)
        answered = await services.answered(rt, [s.id for s in found])
    if not found:
        console.print(f"run {run_id} has no surveys", highlight=False)
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("id", "round", "status", "agents", "answers", "questions", "name"):
        table.add_column(name, justify="left" if name in ("status", "name") else "right", no_wrap=True)
    for s in found:
        asked = s.spec["questions"]
        table.add_row(
            str(s.id), str(s.round), s.status, f"{s.agents:,}", f"{answered.get(s.id, 0):,}", str(len(asked)),
            Text(s.spec.get("name") or ""),
        )  # fmt: skip
    console.print(table)


@surveys.command("show")
@click.argument("run_id", type=int)
@click.argument("survey_id", type=int)
@click.option("--by", help="break the answers down by kind or an attribute")
@async_command
async def surveys_show(run_id: int, survey_id: int, by: str | None) -> None:
    """Show a survey: its status and each question's answers counted."""
    async with _reading() as rt:
        await _show(rt, run_id, survey_id, by)


@surveys.command("export")
@click.argument("run_id", type=int)
@click.argument("survey_id", type=int)
@click.option("--format", "fmt", type=click.Choice(services.EXPORT_FORMATS), default="csv", show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="file [run-ID-survey-SID.FORMAT]"
)
@async_command
async def surveys_export(run_id: int, survey_id: int, fmt: services.ExportFormat, out: Path | None) -> None:
    """Write a survey's answers (one row per agent and question) to a file."""
    out = out or Path(f"run-{run_id}-survey-{survey_id}.{fmt}")
    async with _reading() as rt:
        count = await services.export_survey(rt, run_id, survey_id, format=fmt, out=out)
    click.echo(f"{count} answers written to {out}")


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def survey_tables(questions: list[dict[str, Any]]) -> list[Table]:
    """One table per question: its answers counted (per group when broken down). What users and
    models wrote (questions, options, groups, answers) is shown as `Text`, never read as markup:
    "[/INST]" in an answer is printed as it is."""
    tables = []
    for q in questions:
        table = Table(
            title=Text(f"{q['question'] + 1}. {q['text']} ({q['type']})"),
            title_justify="left",
            caption_justify="left",
            box=None,
            pad_edge=False,
            header_style="bold",
        )
        rows = q["groups"] or [q | {"group": "all"}]
        extra: tuple[str, ...] = ()
        if q["type"] == "number":
            extra = ("n", "mean", "sd", "min", "max")
        elif q["type"] == "choice":
            extra = tuple(q["counts"])
        else:
            extra = ("answered",)
        for name in ("group", *extra, "unreadable", "skipped", "failed"):
            table.add_column(
                Text(name), justify="left" if name == "group" else "right", no_wrap=name == "group"
            )
        for row in rows:
            if q["type"] == "number":
                cells = [f"{row['n']:,}", *(_number(row[k]) for k in ("mean", "sd", "min", "max"))]
            elif q["type"] == "choice":
                cells = [f"{row['counts'][option]:,}" for option in extra]
            else:
                cells = [f"{row['read']:,}"]
            outcomes = (f"{row[k]:,}" for k in ("unreadable", "skipped", "failed"))
            table.add_row(Text(str(row["group"])), *cells, *outcomes)
        samples = [f"agent {s['agent_id']}: {s['answer'][:200]}" for s in q.get("samples") or []]
        table.caption = Text("\n".join(samples)) if samples else None
        tables.append(table)
    return tables
