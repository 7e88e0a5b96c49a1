"""`myriad serve` (the dashboard and API) and `myriad worker` (drives runs)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING

import click

from backend.cli.main import console, main
from backend.settings import Settings

if TYPE_CHECKING:  # the web server's imports are left to `serve`, so other commands start quickly
    import uvicorn
    from fastapi import FastAPI


STREAMS_GRACE = 3  # seconds requests still going get when the service stops (live streams end at once)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
def serve(host: str, port: int) -> None:
    """Serve the dashboard and the REST API; on the embedded default (SQLite) also start a
    `myriad worker` process beside it, which drives the runs and stops with it."""
    from backend.app import Server, create_app

    settings = Settings()
    worker = settings.serve_starts_worker
    app = create_app(settings, worker=worker)
    starting = "the database and the live layer"
    if worker:
        starting += ", and a worker process (it starts a local Ray cluster)"
    console.print(f"Starting Myriad: {starting}…", highlight=False)

    def ready(where: str) -> None:
        console.print(f"Myriad is ready at {where}  (Ctrl-C stops it)", highlight=False)
        _print_sign_in(settings, where, app.state.token)
        console.print(f"API docs: {where}/docs  (send `Authorization: Bearer <token>`)", highlight=False)

    try:
        Server(server_config(app, settings, host, port), on_ready=ready).run()
    except KeyboardInterrupt:  # uvicorn raises the Ctrl-C again once everything has stopped
        console.print("Myriad stopped.", highlight=False)
        sys.exit(130)


def server_config(
    app: FastAPI, settings: Settings, host: str, port: int, grace: int = STREAMS_GRACE
) -> uvicorn.Config:
    """How `serve` runs the app under uvicorn; requests still going when it stops get `grace`
    seconds."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=grace,
        # The client's address and scheme (so the cookie's Secure flag) from trusted proxies only.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )


def _print_sign_in(settings: Settings, where: str, token: str) -> None:
    """The sign-in link with its token on a terminal only: output that is not a terminal may be
    collected as logs, where a token must never go."""
    if sys.stdout.isatty():
        console.print(f"Myriad dashboard: {where}/login?token={token}", highlight=False)
        if settings.token is None:
            console.print("The token was made for this start; set MYRIAD_TOKEN to keep one.", highlight=False)
        return
    if settings.token is not None:
        console.print(f"Myriad dashboard: {where}/login  (token from MYRIAD_TOKEN)", highlight=False)
        return
    path = settings.token_file
    path.unlink(missing_ok=True)  # made afresh, so it is the owner's only from the start
    path.touch(mode=0o600)
    path.write_text(token + "\n", encoding="utf-8")
    console.print(
        f"Myriad dashboard: {where}/login  (token made for this start: in {path}, readable by you only)",
        highlight=False,
    )


@main.command()
@click.option("--exit-when-idle", is_flag=True, help="stop when no run is left to claim")
@click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster to join [RAY_ADDRESS; default: start one]")
@click.option(
    "--parent-pid",
    type=click.IntRange(1),
    help="stop when the process with this id ends, however it ends (how `myriad serve` ties the "
    "worker it starts to itself)",
)
def worker(exit_when_idle: bool, address: str | None, parent_pid: int | None) -> None:
    """Claim queued runs (and runs whose worker died) and drive them."""
    settings = Settings(ray_address=address) if address else Settings()
    asyncio.run(_serve(settings, exit_when_idle, parent_pid))


async def _serve(settings: Settings, exit_when_idle: bool, parent_pid: int | None) -> None:
    from backend.runtime import Runtime
    from backend.worker_process import stop_with_parent
    from backend.workflow.worker import Worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if parent_pid is not None:
        stop_with_parent(parent_pid, stop.set, loop)
    me = f"worker {settings.worker_id}"
    if settings.ray_address:
        click.echo(f"{me}: joining the Ray cluster at {settings.ray_address}…", err=True)
    else:
        click.echo(f"{me}: starting a local Ray cluster…", err=True)
    async with Runtime(settings, ray=True) as rt:
        if stop.is_set():
            return  # asked to stop while Ray was starting
        click.echo(f"{me} (process {os.getpid()}) is waiting for runs", err=True)
        driven = await Worker(rt).serve(stop, exit_when_idle=exit_when_idle)
    click.echo(f"{me} drove {driven} run(s)", err=True)
