"""Logging for every `myriad` command: JSON lines when the output is not a terminal (what log
collectors read), plain lines otherwise; each line logged while a run is driven names the run."""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar
from typing import TextIO

from pythonjsonlogger.json import JsonFormatter

__all__ = ["RUN_ID", "configure"]

# Set while a run is driven; tasks started then inherit it, so their lines name the run too.
RUN_ID: ContextVar[int | None] = ContextVar("run_id", default=None)


class _RunId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        run_id = RUN_ID.get()
        # As logging does with `extra=`: the record's fields are its __dict__.
        record.__dict__.update(run_id=run_id, run=f" [run {run_id}]" if run_id is not None else "")
        return True


def configure(level: str = "WARNING", stream: TextIO | None = None) -> None:
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    handler.addFilter(_RunId())
    if stream.isatty():
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s%(run)s: %(message)s"))
    else:
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(run_id)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
