"""The `myriad` command: one module per group of commands, registered on `main`."""

from backend.cli import node, run, runs, serve
from backend.cli.main import main

__all__ = ["main", "node", "run", "runs", "serve"]
