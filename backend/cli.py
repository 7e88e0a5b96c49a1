"""The `myriad` command."""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import signal
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from agents.llm_stub import StubConfig, StubServer
from agents.scenarios import RoundResult
from agents.spec import RunSpec, SpecError, load_spec
from backend import logs, services
from backend.runtime import Runtime
from backend.settings import Settings
from backend.store.db import migrate
from backend.workflow.lifecycle import IllegalTransition
from backend.workflow.worker import Worker

if TYPE_CHECKING:  # the web server's imports are left to `serve`, so other commands start quickly
    import uvicorn
    from fastapi import FastAPI

console = Console(soft_wrap=True)
T = TypeVar("T")


def _fail(message: str, code: int = 1) -> None:
    click.echo(message, err=True)
    sys.exit(code)


def _async(command: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
    """Run an async command; known errors end it with a message, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return asyncio.run(command(*args, **kwargs))
        except (services.RunNotFound, IllegalTransition, ValueError) as e:
            _fail(str(e))
            raise  # unreachable: _fail exits

    return wrapper


@click.group()
@click.version_option(package_name="myriad-sim")
def main() -> None:
    """Myriad: very large multi-agent simulations on Ray."""
    try:
        settings = Settings()
    except ValidationError as e:  # one line per bad setting, not pydantic's report
        _fail("\n".join(_setting_problem(problem) for problem in e.errors()))
        return
    logs.configure(settings.log_level)


def _setting_problem(problem: Any) -> str:
    message = str(problem["msg"]).removeprefix("Value error, ")
    return message if "MYRIAD_" in message else f"setting {'.'.join(map(str, problem['loc']))}: {message}"


# -- run ------------------------------------------------------------------------------------------


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--submit", is_flag=True, help="only queue the run for `myriad worker`s")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="results folder [results/NAME-ID]"
)
@click.option("--hosts", type=click.IntRange(min=1), help="AgentHost actors, overriding the spec's placement")
@click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster to join [RAY_ADDRESS; default: start one]")
def run(spec_path: Path, submit: bool, out: Path | None, hosts: int | None, address: str | None) -> None:
    """Run the simulation in SPEC (YAML or JSON) here, printing each round's statistics."""
    try:
        spec = load_spec(spec_path)
        if hosts is not None:
            spec = RunSpec.parse(
                spec.model_dump() | {"placement": spec.placement.model_dump() | {"hosts": hosts}}
            )
        settings = Settings(ray_address=address) if address else Settings()
        asyncio.run(_submit(settings, spec) if submit else _run_here(settings, spec, out))
    except SpecError as e:  # invalid, or refused: a model key not allowed, too big for the cluster
        _fail("\n".join([f"{spec_path}: invalid run spec", *(f"  {p}" for p in e.problems)]), code=2)


async def _submit(settings: Settings, spec: RunSpec) -> None:
    async with Runtime(settings) as rt:
        queued = await services.submit(rt, spec)
    console.print(f"run {queued.id} queued: {spec.population.total:,} agents, {spec.rounds} rounds")


async def _run_here(settings: Settings, spec: RunSpec, out: Path | None) -> None:
    with _progress() as progress:
        task = progress.add_task("starting", total=None)
        async with Runtime(settings, ray=True) as rt:
            queued = await services.submit(rt, spec)
            worker = Worker(rt)
            claimed = await worker.claim(queued.id)
            if claimed is None:
                _fail(f"run {queued.id} was claimed by another worker")
                return
            console.print(
                f"run {queued.id}: {spec.population.total:,} agents; scenario {spec.scenario.name}, "
                f"{spec.rounds} rounds, seed {spec.seed}"
            )
            names: tuple[str, ...] = ()

            def show(result: RoundResult) -> None:
                nonlocal names
                if not names:
                    names = tuple(result.stats)
                    console.print(_line(["round", *names, "time", "failed"]), style="bold")
                    progress.update(task, description="rounds", total=spec.rounds, completed=0)
                console.print(_line(_cells(result, names)), highlight=False)
                progress.advance(task)

            status = await worker.drive(claimed, on_round=show)
            folder = out or Path("results") / f"{spec.name}-{queued.id}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "spec.json").write_text(spec.model_dump_json(indent=2), encoding="utf-8")
            for fmt in ("json", "csv"):
                await services.export(rt, queued.id, table="rounds", format=fmt, out=folder / f"rounds.{fmt}")
    console.print(
        f"run {queued.id} {status}; results written to {folder}/ (rounds.json, rounds.csv, spec.json)"
    )
    if status != "completed":
        sys.exit(1)


def _progress() -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _line(cells: list[str]) -> str:
    return " ".join(f"{c:>7}" for c in cells)


def _cells(result: RoundResult, stat_names: tuple[str, ...]) -> list[str]:
    def cell(value: float | int | None) -> str:
        if value is None:
            return "-"
        return str(value) if isinstance(value, int) else f"{value:.2f}"

    stats = [cell(result.stats.get(name)) for name in stat_names]
    return [str(result.round), *stats, f"{result.time:.2f}s", str(result.failures)]


# -- serve ----------------------------------------------------------------------------------------

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


# -- worker ---------------------------------------------------------------------------------------


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


# -- node -----------------------------------------------------------------------------------------


@main.group()
def node() -> None:
    """This machine as a device of a Myriad cluster."""


@node.command("join")
@click.argument("address")
@click.option("--cpus", type=click.IntRange(min=0), help="CPUs to give agent hosts [all]")
@click.option("--gpus", type=click.IntRange(min=0), help="GPUs to offer [all]")
@click.option("--ip", "node_ip", help="this machine's address as the head sees it [detected]")
@click.option(
    "--temp-dir", type=click.Path(file_okay=False), help="where Ray keeps this node's files [Ray's]"
)
def node_join(
    address: str, cpus: int | None, gpus: int | None, node_ip: str | None, temp_dir: str | None
) -> None:
    """Join the Ray cluster whose head is at ADDRESS (host:port, e.g. head-node:6380) until
    stopped; new runs place hosts on this node by its free CPUs. The cluster's token comes from
    RAY_AUTH_TOKEN (as in the head's .env); RAY_AUTH_MODE=disabled joins a cluster without one."""
    # Ray authenticates only when told to: a token is required unless the operator says otherwise.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    if os.environ["RAY_AUTH_MODE"] == "token" and not _ray_token_given():
        _fail("set RAY_AUTH_TOKEN to the cluster's token (RAY_AUTH_TOKEN in the head's .env)")
    command = ["ray", "start", f"--address={address}", "--block", "--disable-usage-stats"]
    command += [f"--num-cpus={cpus}"] * (cpus is not None) + [f"--num-gpus={gpus}"] * (gpus is not None)
    command += [f"--node-ip-address={node_ip}"] * (node_ip is not None)
    command += [f"--temp-dir={temp_dir}"] * (temp_dir is not None)
    beside = Path(sys.executable).with_name("ray")  # the venv's, when its bin is not on PATH
    ray = str(beside) if beside.exists() else shutil.which("ray")
    if ray is None:
        _fail("the `ray` command is missing: install Myriad (it brings Ray) on this machine first")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.execv(ray, command)


def _ray_token_given() -> bool:
    """A Ray token in one of the places Ray reads it from."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token"
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or Path(path).is_file()


# -- llm-stub -------------------------------------------------------------------------------------


@main.command("llm-stub")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8001, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--latency", default=0.5, show_default=True, type=click.FloatRange(min=0), help="seconds per answer"
)
@click.option(
    "--capacity", default=0, show_default=True, type=click.IntRange(min=0), help="calls in flight; 0: any"
)
@click.option(
    "--error-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="share of 500s"
)
@click.option(
    "--garbage-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1), help="share unreadable"
)
def llm_stub(
    host: str, port: int, latency: float, capacity: int, error_rate: float, garbage_rate: float
) -> None:
    """Serve a stand-in OpenAI-compatible model (for demos, tests and benchmarks without a GPU)."""
    config = StubConfig(latency=latency, capacity=capacity, error_rate=error_rate, garbage_rate=garbage_rate)
    asyncio.run(_stub(StubServer(config, host, port)))


async def _stub(server: StubServer) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    url = await server.start()
    console.print(f"stand-in model at {url} (any model name)", highlight=False)
    await stop.wait()
    await server.stop()
    served = server.served
    console.print(f"answered {served.answered:,} of {served.requests:,} calls", highlight=False)


# -- runs -----------------------------------------------------------------------------------------


@main.group()
def runs() -> None:
    """List, inspect, control and export runs."""


@runs.command("list")
@click.option("--status", help="only runs with this status")
@click.option("--limit", default=50, show_default=True)
@_async
async def runs_list(status: str | None, limit: int) -> None:
    async with Runtime(Settings()) as rt:
        found = await services.list_runs(rt, limit=limit, status=status)
    console.print(_line(["id", "status", "round", "rounds", "agents"]) + "  name", style="bold")
    for r in found:
        console.print(
            _line([str(r.id), r.status, str(r.round), str(r.rounds), str(r.agents)]) + f"  {r.name}"
        )


@runs.command("show")
@click.argument("run_id", type=int)
@_async
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
        console.print(_line(["round", *names, "time", "failed"]), style="bold")
        for row in rows:
            result = RoundResult(row.round, row.stats, time=row.time, failures=row.failures)
            console.print(_line(_cells(result, names)), highlight=False)


@runs.command("export")
@click.argument("run_id", type=int)
@click.option("--table", type=click.Choice(services.EXPORT_TABLES), default="rounds", show_default=True)
@click.option("--format", "fmt", type=click.Choice(services.EXPORT_FORMATS), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="file [run-ID-TABLE.FORMAT]")
@_async
async def runs_export(
    run_id: int, table: services.ExportTable, fmt: services.ExportFormat, out: Path | None
) -> None:
    out = out or Path(f"run-{run_id}-{table}.{fmt}")
    async with Runtime(Settings()) as rt:
        count = await services.export(rt, run_id, table=table, format=fmt, out=out)
    click.echo(f"{count} {table} rows written to {out}")


def _control(action: str) -> click.Command:
    @click.argument("run_id", type=int)
    @_async
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
@_async
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


# -- db -------------------------------------------------------------------------------------------


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


if __name__ == "__main__":
    main()
