"""Server-sent events that keep open pages current: each sends a page's fragments again when
they change, read from the live layer (an experiment's, from its runs' rows in the database), so
a page left open follows its run or experiment without reloading."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, status
from fastapi.sse import EventSourceResponse, ServerSentEvent

from backend import services
from backend.deps import ExperimentId, RunId, RuntimeDep
from backend.runtime import Runtime
from backend.web import cluster, experiments, runs
from backend.web.auth import require_login
from backend.web.render import render

__all__ = ["router"]

router = APIRouter(prefix="/live", include_in_schema=False, dependencies=[Depends(require_login)])

Context = Callable[[Runtime], Awaitable[dict[str, Any]]]
TICK = 1.0  # seconds between looks at the live layer
REFRESH = 5.0  # a run's page is rendered again at least this often, event or not


def _closing(request: Request) -> bool:
    """The server is stopping: end the stream (the browser reconnects to whichever serves next)."""
    return request.app.state.closing.is_set()


def _page_stream(path: str, name: str, template: str, event: str, context: Context) -> None:
    """A stream at `path` that renders `template` every tick and sends it as `event` whenever it
    differs from what was sent."""

    async def stream(request: Request, rt: RuntimeDep) -> AsyncIterator[ServerSentEvent]:
        sent = None
        while not _closing(request):
            html = render(request, template, await context(rt))
            if html != sent:
                sent = html
                yield ServerSentEvent(raw_data=html, event=event)
            await asyncio.sleep(TICK)

    router.add_api_route(path, stream, name=name, response_class=EventSourceResponse)


_page_stream("/runs", "runs_stream", "runs_rows.html", "rows", runs.runs_context)
_page_stream("/cluster", "cluster_stream", "cluster_nodes.html", "nodes", cluster.cluster_context)


def _cursor(after: str = "0", last_event_id: Annotated[str | None, Header()] = None) -> int:
    """The id of the last event a page has: `?after=`, or the Last-Event-ID a reconnecting browser
    sends. Checked before the stream starts: one that is not an event id is a 400, not a feed
    quietly sent again from the start."""
    text = after if last_event_id is None else last_event_id
    if not (text.isascii() and text.isdigit() and len(text) < 19):
        where = "after" if last_event_id is None else "Last-Event-ID"
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=f"{where} must be an event id (digits), not {text[:40]!r}"
        )
    return int(text)


@router.get("/runs/{run_id}", name="run_stream", response_class=EventSourceResponse)
async def run_stream(
    request: Request, rt: RuntimeDep, run_id: RunId, cursor: Annotated[int, Depends(_cursor)]
) -> AsyncIterator[ServerSentEvent]:
    """A run's page: new events for the feed (with their ids, so a reconnecting browser resumes
    where it was), and its live part whenever a round or a command lands, with the chart of the
    same newest recorded round in the same event (so the page never shows two rounds at once);
    "done" once the run is finished."""
    sent: dict[str, str] = {}
    waited = REFRESH
    while not _closing(request):
        feed = await services.follow(rt, run_id, cursor, wait=TICK)
        if feed:
            cursor = int(feed[-1][0])
            html = render(request, "run_feed.html", {"feed": feed[::-1], "run_id": run_id})
            yield ServerSentEvent(raw_data=html, event="feed", id=str(cursor))
        waited += TICK
        if not feed and waited < REFRESH and sent:
            continue
        waited = 0
        context = await runs.following_context(rt, run_id)
        live = render(request, "run_live.html", context)
        chart = render(request, "run_chart.html", context | {"oob": True})
        if sent.get("progress") != live or sent.get("chart") != chart:
            html = live + (chart if sent.get("chart") != chart else "")
            sent |= {"progress": live, "chart": chart}
            yield ServerSentEvent(raw_data=html, event="progress")
        if not context["unfinished"]:
            yield ServerSentEvent(raw_data="", event="done")
            return


async def _experiment(rt: RuntimeDep, experiment_id: ExperimentId) -> int:
    """An experiment that is there: a missing one is a 404 before the stream starts."""
    await services.get_experiment(rt, experiment_id)
    return experiment_id


@router.get("/experiments/{experiment_id}", name="experiment_stream", response_class=EventSourceResponse)
async def experiment_stream(
    request: Request, rt: RuntimeDep, experiment_id: Annotated[int, Depends(_experiment)]
) -> AsyncIterator[ServerSentEvent]:
    """An experiment's page: its live part whenever it is paused or resumed or one of its runs
    changes status or round; "done" once it has ended. An experiment has no event stream: its
    state is its runs' rows, so they are read every tick, and the page (its charts and effects
    read every run's rounds) rendered again only when they changed. A large experiment's page
    takes a while to build: the stream then waits in proportion, so that one open page never
    keeps the server busy more than a fifth of the time."""
    seen = None
    while not _closing(request):
        experiment = await services.get_experiment(rt, experiment_id)
        runs_now = await services.runs_of(rt, experiment_id)
        now = (experiment.paused, [(run.id, run.status, run.round) for run in runs_now])
        pause = TICK
        if now != seen:
            seen = now
            started = time.monotonic()
            context = await experiments.live_context(rt, experiment_id)
            yield ServerSentEvent(raw_data=render(request, "experiment_live.html", context), event="progress")
            if context["ended"]:
                yield ServerSentEvent(raw_data="", event="done")
                return
            pause = max(TICK, 4 * (time.monotonic() - started))
        await asyncio.sleep(pause)
