"""`myriad serve` (the dashboard and API) and `myriad worker` (drives runs)."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import TYPE_CHECKING

import click

from backend.cli.main import console, main
from backend.runtime import Runtime
from backend.settings import Settings
from backend.workflow.worker import Worker

if TYPE_CHECKING:  # the web server's imports are left to `serve`, so other commands start quickly
    import uvicorn
    from fastapi import FastAPI


STREAMS_GRACE = 3  # seconds requests still going get when the service stops (live streams end at once)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
def serve(host: str, port: int) -> None:
    """Serve the REST API (and, on the embedded default, drive runs in this process)."""
    from backend.app import Server, create_app

    settings = Settings()
    app = create_app(settings)
    where = f"http://{host}:{port}"
    _print_sign_in(settings, where, app.state.token)
    console.print(f"API docs: {where}/docs  (send `Authorization: Bearer <token>`)", highlight=False)
    if settings.runs_worker_in_process:
        console.print("Starting the embedded database, live layer and Ray cluster…", highlight=False)
    Server(server_config(app, settings, host, port)).run()


def server_config(
    app: FastAPI, settings: Settings, host: str, port: int, grace: float = STREAMS_GRACE
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
def worker(exit_when_idle: bool, address: str | None) -> None:
    """Claim queued runs (and runs whose worker died) and drive them."""
    settings = Settings(ray_address=address) if address else Settings()
    asyncio.run(_serve(settings, exit_when_idle))


async def _serve(settings: Settings, exit_when_idle: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Runtime(settings, ray=True) as rt:
        click.echo(f"worker {settings.worker_id} waiting for runs", err=True)
        driven = await Worker(rt).serve(stop, exit_when_idle=exit_when_idle)
    click.echo(f"worker {settings.worker_id} drove {driven} run(s)", err=True)
