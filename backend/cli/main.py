"""The `myriad` command group and what its commands share: the console, errors without
tracebacks.

Each group of commands lives in a module of its own, imported only when one of its commands is
used: `myriad runs list` must answer in a fraction of a second, and must not pay for Ray, the
web server or the engine, which `myriad run`, `serve` and `worker` need.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import re
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from pydantic import ValidationError
from rich.console import Console

from backend import logs
from backend.settings import Settings

__all__ = ["EXIT_PAUSED", "async_command", "console", "fail", "main", "results_folder"]

EXIT_PAUSED = 3  # a run (or an experiment) paused, and the command that followed it left it so

# Where the output is not a terminal (a pipe, a file), rich would assume 80 columns and squeeze
# wide tables: lines may be as long as they need there.
console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 200)
T = TypeVar("T")


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(message, err=True)
    sys.exit(code)


def results_folder(name: str, suffix: str) -> Path:
    """`results/NAME-SUFFIX`, NAME made safe as one folder name: a spec's name may hold `/` or
    `..`, which must not put results outside `results/`."""
    safe = re.sub(r"[^\w.-]+", "-", name).strip(".-") or "results"
    return Path("results") / f"{safe}-{suffix}"


def async_command(command: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command; known errors end it with a message, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        from backend.domain import IllegalTransition
        from backend.services import RunNotFound, SurveyNotFound

        try:
            return asyncio.run(command(*args, **kwargs))
        except (RunNotFound, SurveyNotFound, IllegalTransition, ValueError) as e:
            fail(str(e))
            raise  # unreachable: fail exits

    return wrapper


# Each command (or group) by the module that registers it on `main`.
COMMANDS = {
    "run": "backend.cli.run",
    "runs": "backend.cli.runs",
    "db": "backend.cli.runs",
    "serve": "backend.cli.serve",
    "worker": "backend.cli.serve",
    "node": "backend.cli.node",
    "llm-stub": "backend.cli.node",
    "experiment": "backend.cli.experiments",
    "experiments": "backend.cli.experiments",
    "survey": "backend.cli.surveys",
    "surveys": "backend.cli.surveys",
}


class _Commands(click.Group):
    """A group whose commands are imported when they are used (or listed, for `--help`)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            importlib.import_module(COMMANDS[cmd_name])  # it registers its commands on `main`
        return super().get_command(ctx, cmd_name)


@click.group(cls=_Commands)
@click.version_option(package_name="myriad-sim")
def main() -> None:
    """Myriad: very large multi-agent simulations on Ray."""
    try:
        settings = Settings()
    except ValidationError as e:  # one line per bad setting, not pydantic's report
        fail("\n".join(_setting_problem(problem) for problem in e.errors()))
        return
    logs.configure(settings.log_level)


def _setting_problem(problem: Any) -> str:
    message = str(problem["msg"]).removeprefix("Value error, ")
    return message if "MYRIAD_" in message else f"setting {'.'.join(map(str, problem['loc']))}: {message}"
