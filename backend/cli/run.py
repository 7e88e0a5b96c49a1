"""`myriad run`: a spec run from the terminal, round by round.

With a worker alive on the same database (`myriad serve` starts one; so does `myriad worker`) the
run is handed to it and followed from here: no Ray cluster of its own, so the first round comes
at once. With none, this process starts Ray and drives the run itself, saying what it is doing
meanwhile. Either way each round is printed as it is recorded, and a pause (a spent budget, a
user's) is said with how to go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from agents.llm import tokens
from agents.spec import RunSpec, SpecError, load_spec
from backend import services
from backend.cli.main import EXIT_PAUSED, console, fail, main, results_folder
from backend.cli.runs import go_on
from backend.cli.tables import RoundLines, cells
from backend.domain import EventKind
from backend.runtime import Runtime
from backend.settings import Settings

__all__: list[str] = []

_FINAL = (EventKind.COMPLETED, EventKind.STOPPED, EventKind.FAILED)  # its last event
_FOLLOW_WAIT = 0.25  # seconds to wait for the run's next event before looking at its state
_NO_WORKER_AFTER = 10.0  # seconds a queued run waits before `myriad run` looks for a worker again


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--submit", is_flag=True, help="only queue the run (for a worker) and exit")
@click.option(
    "--here", is_flag=True, help="drive the run in this process (starting Ray) even when a worker is alive"
)
@click.option(
    "--wait-on-pause", is_flag=True, help="when the run pauses, wait until it is resumed or stopped"
)
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), help="results folder [results/NAME-ID]"
)
@click.option("--hosts", type=click.IntRange(min=1), help="AgentHost actors, overriding the spec's placement")
@click.option("--address", envvar="RAY_ADDRESS", help="Ray cluster to join [RAY_ADDRESS; default: start one]")
def run(
    spec_path: Path,
    submit: bool,
    here: bool,
    wait_on_pause: bool,
    out: Path | None,
    hosts: int | None,
    address: str | None,
) -> None:
    """Run the simulation in SPEC (YAML or JSON), printing each round's statistics.

    A worker alive on this database (`myriad serve`'s, or a `myriad worker`) drives the run;
    with none, this process does, starting Ray. When the run pauses (its budget spent, or a
    user's pause), this says why and how to go on, and exits with status 3 (the run stays
    paused) or, with --wait-on-pause, waits for a resume. Status 0: completed; 1: stopped or
    failed.
    """
    try:
        spec = load_spec(spec_path)
        if hosts is not None:
            spec = RunSpec.parse(
                spec.model_dump() | {"placement": spec.placement.model_dump() | {"hosts": hosts}}
            )
        settings = Settings(ray_address=address) if address else Settings()
        following: dict[str, Any] = {}
        try:
            code = asyncio.run(_main(settings, spec, out, submit, here, wait_on_pause, following))
        except KeyboardInterrupt:
            if following.get("attached"):
                run_id = following["run"]
                fail(f"\nstopped following run {run_id}; it goes on (myriad runs show {run_id})", code=130)
            raise
    except SpecError as e:  # invalid, or refused: a model key not allowed, too big for the cluster
        fail("\n".join([f"{spec_path}: invalid run spec", *(f"  {p}" for p in e.problems)]), code=2)
        return
    if code:
        sys.exit(code)


async def _main(
    settings: Settings,
    spec: RunSpec,
    out: Path | None,
    submit: bool,
    here: bool,
    wait_on_pause: bool,
    following: dict[str, Any],
) -> int:
    with _Display() as display:
        display.stage("opening the database and the live layer")
        async with Runtime(settings) as rt:
            if submit:
                queued = await services.submit(rt, spec)
                size = f"{spec.population.total:,} agents, {spec.rounds} rounds"
                console.print(f"run {queued.id} queued: {size}", highlight=False)
                return 0
            workers = [] if here else await services.workers(rt)
            if workers:
                queued = await services.submit(rt, spec)
                following.update(run=queued.id, attached=True)
                _introduce(queued.id, spec, _handed_to(workers))
                display.stage("queued")
                follower = _Follower(rt, queued.id, spec, display, wait_on_pause)
                end = await follower.follow()
            else:
                async with _driving_here(rt, spec, display) as (run_id, driving):
                    follower = _Follower(rt, run_id, spec, display, wait_on_pause)
                    end = await follower.follow(driving)
                    follower.here = driving is not None
            run_id = follower.run_id
            folder = out or results_folder(spec.name, str(run_id))
            await _write_results(rt, run_id, spec, folder)
    return _ending(run_id, end, folder, follower)


def _handed_to(workers: list[dict[str, Any]]) -> str:
    idle = [w for w in workers if w.get("free", 0) > 0]
    if idle:
        return f"driven by worker {idle[0]['id']}"
    busy = ", ".join(f"{w['id']} (runs {', '.join(map(str, w.get('runs', [])))})" for w in workers)
    return f"queued for the busy worker{'s' * (len(workers) > 1)} {busy}"


def _introduce(run_id: int, spec: RunSpec, how: str) -> None:
    console.print(
        f"run {run_id}: {spec.population.total:,} agents; scenario {spec.scenario.name}, "
        f"{spec.rounds} rounds, seed {spec.seed}; {how}",
        highlight=False,
        markup=False,
    )


@contextlib.asynccontextmanager
async def _driving_here(
    rt: Runtime, spec: RunSpec, display: _Display
) -> AsyncIterator[tuple[int, asyncio.Task[Any] | None]]:
    """No worker is alive: start (or join) Ray, and drive the run in this process. On the way
    out, a run still going (paused, and left so) is handed back at its round boundary."""
    from agents.cluster import RayCluster
    from backend.workflow.worker import Worker

    address = rt.settings.ray_address
    display.stage(f"joining the Ray cluster at {address}" if address else "starting Ray (a local cluster)")
    cluster = RayCluster(address)
    cluster.connect()  # in the main thread: Ray installs signal handlers there
    try:
        queued = await services.submit(rt, spec)
        worker = Worker(rt)
        claimed = await worker.claim(queued.id)
        if claimed is None:  # a worker started meanwhile and took it: follow it there
            _introduce(queued.id, spec, "driven by another worker")
            yield queued.id, None
            return
        _introduce(queued.id, spec, "driven here (no worker is running: `myriad serve` starts one)")
        shutdown = asyncio.Event()
        driving = asyncio.create_task(worker.drive(claimed, shutdown=shutdown))
        try:
            yield queued.id, driving
        finally:
            shutdown.set()  # a paused run is handed back, to be resumed under a worker
            if not driving.done():
                display.stage("stopping the hosts")
            await driving
    finally:
        cluster.close()


class _Display:
    """What `myriad run` is doing, on one line that changes (a spinner, then the rounds' bar);
    where the output is not a terminal, each stage is printed once instead."""

    def __init__(self) -> None:
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[count]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task: TaskID | None = None
        self.current = ""

    def __enter__(self) -> _Display:
        if console.is_terminal:  # elsewhere it would only leave an empty line behind
            self.progress.start()
        self.task = self.progress.add_task("starting", total=None, count="")
        return self

    def __exit__(self, *exc: object) -> None:
        if console.is_terminal:
            self.progress.stop()

    def stage(self, what: str) -> None:
        if what == self.current:
            return
        self.current = what
        assert self.task is not None
        self.progress.update(self.task, description=what + "…")
        if not console.is_terminal:
            console.print(what + "…", highlight=False, markup=False)

    def rounds(self, done: int, total: int) -> None:
        assert self.task is not None
        self.current = "rounds"
        self.progress.update(
            self.task, description="rounds", total=total, completed=done, count=f"{done}/{total}"
        )


class _Follower:
    """Follows a run from its recorded events: prints each round as it is stored, what it is
    doing before its first round, and why it pauses; returns how it ended ("paused" when it
    paused and is left so)."""

    def __init__(
        self, rt: Runtime, run_id: int, spec: RunSpec, display: _Display, wait_on_pause: bool
    ) -> None:
        self.rt = rt
        self.run_id = run_id
        self.spec = spec
        self.display = display
        self.wait_on_pause = wait_on_pause
        self.lines: RoundLines | None = None
        self.names: tuple[str, ...] = ()  # the statistics, in the first round's order
        self.started = False
        self.round = 0
        self.paused_for: str | None = None  # why it paused, when it did
        self.here = False  # driven by this process (so by no worker once it exits)
        self.since = time.monotonic()

    async def follow(self, driving: asyncio.Task[Any] | None = None) -> str:
        cursor = 0
        while True:
            feed = await services.follow(self.rt, self.run_id, after=cursor, wait=_FOLLOW_WAIT)
            for event_id, event in feed:
                cursor = int(event_id)
                if (end := await self._show(event["kind"], event["round"], event["payload"])) is not None:
                    return end
            if driving is not None and driving.done() and not feed:
                # The driver ended without an ending recorded (the lease lost, the database away).
                return (await services.get_run(self.rt, self.run_id)).status
            if not self.started:
                await self._stage()

    async def _show(self, kind: str, round: int, payload: dict[str, Any]) -> str | None:
        run_id = self.run_id
        if kind == EventKind.ROUND:
            await self._round(round)
        elif kind == EventKind.STARTED:
            self.started = True
            self.display.rounds(self.round, self.spec.rounds)
        elif kind == EventKind.BACKGROUNDS_WRITTEN:
            written, kept, used = payload["written"], payload["kept"], tokens(payload["usage"])
            self._say(f"backgrounds: {written:,} written by the model, {kept:,} kept from the template")
            self._say(f"writing them took {used:,} tokens")
        elif kind == EventKind.BUDGET and self.paused_for is not None:  # a resume the worker refused
            self._say(f"resume refused: {payload.get('reason', '')}")
        elif kind in (EventKind.BUDGET, EventKind.PAUSED):
            why = str(payload.get("reason", "")) if kind == EventKind.BUDGET else "a user paused it"
            self.paused_for = why
            self._say(f"run {run_id} paused at round {round}: {why}")
            self._say(go_on(run_id, budget=kind == EventKind.BUDGET))
            if not self.wait_on_pause:
                return "paused"
            self._say("waiting for it to be resumed or stopped (Ctrl-C leaves it paused)")
        elif kind == EventKind.RESUMED and self.paused_for is not None:
            self.paused_for = None
            self._say(f"run {run_id} resumed")
        elif kind == EventKind.RELEASED:
            self._say(f"the worker handed run {run_id} back ({payload.get('reason')}); waiting for a worker")
            self.started = False
        elif kind in _FINAL:
            if payload.get("error"):
                self._say(f"error: {payload['error']}")
            return kind
        return None

    async def _round(self, round: int) -> None:
        row = await services.round_detail(self.rt, self.run_id, round)
        if row is None:  # forgotten by a rewind since: it comes again
            return
        names = self.names = self.names or tuple(row.stats)
        found = cells(row.round, row.stats, names, row.time, row.failures)
        if self.lines is None:
            self.lines = RoundLines(names, found)
            console.print(self.lines.header())
        line = self.lines.row(found)
        console.print(line, highlight=False)
        self.started = True
        self.round = round
        self.display.rounds(round, self.spec.rounds)

    async def _stage(self) -> None:
        """What the run is doing before its first round, from its status and live state."""
        run = await services.get_run(self.rt, self.run_id)
        state = await services.live_state(self.rt, self.run_id)
        agents, hosts = self.spec.population.total, self.spec.placement.hosts
        if run.status == "queued":
            waited = time.monotonic() - self.since
            if waited > _NO_WORKER_AFTER and not await services.workers(self.rt):
                self.display.stage("queued; no worker is running: start `myriad serve` or `myriad worker`")
            else:
                self.display.stage("queued: waiting for a worker")
        elif state.get("status") in (None, "queued"):
            self.display.stage(f"placing {hosts} hosts" if hosts else "placing the hosts")
        elif state.get("personas_total") and state.get("personas", 0) < state["personas_total"]:
            self.display.stage(f"writing backgrounds {state['personas']:,}/{state['personas_total']:,}")
        else:
            self.display.stage(f"populating: storing {agents:,} agents' profiles")

    def _say(self, line: str) -> None:
        console.print(line, highlight=False, markup=False)


async def _write_results(rt: Runtime, run_id: int, spec: RunSpec, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "spec.json").write_text(spec.model_dump_json(indent=2), encoding="utf-8")
    for fmt in ("json", "csv"):
        await services.export(rt, run_id, table="rounds", format=fmt, out=folder / f"rounds.{fmt}")


def _ending(run_id: int, end: str, folder: Path, follower: _Follower) -> int:
    written = f"results written to {folder}/ (rounds.json, rounds.csv, spec.json)"
    if end == "paused":
        console.print(f"run {run_id} stays paused at round {follower.round}; {written}", highlight=False)
        if follower.here:
            console.print(
                "it was driven here: once resumed, a worker goes on with it (`myriad serve` starts one, "
                "or `myriad worker`)",
                highlight=False,
            )
        return EXIT_PAUSED
    console.print(f"run {run_id} {end}; {written}", highlight=False)
    return 0 if end == "completed" else 1
