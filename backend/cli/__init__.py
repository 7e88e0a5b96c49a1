"""The `myriad` command: one module per group of commands, each loaded only when one of its
commands is used (see `backend.cli.main`)."""

from backend.cli.main import main

__all__ = ["main"]
