"""The `myriad` command group and what its commands share: the console, errors without
tracebacks."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from rich.console import Console

from backend import logs, services
from backend.settings import Settings
from backend.workflow.lifecycle import IllegalTransition

__all__ = ["async_command", "console", "fail", "main"]

console = Console(soft_wrap=True)
T = TypeVar("T")


def fail(message: str, code: int = 1) -> None:
    click.echo(message, err=True)
    sys.exit(code)


def async_command(command: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command; known errors end it with a message, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(command(*args, **kwargs))
        except (services.RunNotFound, IllegalTransition, ValueError) as e:
            fail(str(e))
            raise  # unreachable: fail exits

    return wrapper


@click.group()
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
