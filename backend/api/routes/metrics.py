"""/metrics in Prometheus' text format: what runs, how fast, on how many nodes and hosts, the
language-model tokens spent, and how long requests take."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend import services
from backend.deps import RuntimeDep, require_token

__all__ = ["RequestTimer", "router"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_token)])


class RequestTimer:
    """ASGI middleware: each request's duration, by method, route name (unique in the app) and
    status, in a histogram of the app's own registry (live-update streams left out: they last)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.seconds = Histogram(
            "myriad_http_request_seconds",
            "Time to answer an HTTP request",
            ["method", "route", "status"],
            registry=registry,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            route = getattr(scope.get("route"), "name", "unmatched")
            if not scope["path"].startswith("/live/"):
                self.seconds.labels(scope["method"], route, str(status)).observe(
                    time.perf_counter() - started
                )


def _snapshot(values: dict[str, Any]) -> CollectorRegistry:
    """The state of runs and the cluster now, as gauges of a registry made for this scrape."""
    registry = CollectorRegistry()
    runs = Gauge("myriad_runs", "Runs by status", ["status"], registry=registry)
    for status, count in values["runs"].items():
        runs.labels(status).set(count)
    # Gauges, all of them (no `_total`, the suffix Prometheus keeps for counters): deleting a run
    # or a run ending takes its rounds, steps and tokens away.
    Gauge(
        "myriad_rounds", "Rounds recorded in all runs (deriv() gives rounds per second)", registry=registry
    ).set(values["rounds"])
    Gauge("myriad_agents_running", "Agents of running runs", registry=registry).set(values["agents"])
    Gauge("myriad_nodes", "Ray nodes the workers see", registry=registry).set(values["nodes"])
    Gauge("myriad_hosts", "Agent hosts of active runs", registry=registry).set(values["hosts"])
    Gauge("myriad_agent_steps", "Agent steps taken by the hosts of active runs", registry=registry).set(
        values["steps"]
    )
    Gauge(
        "myriad_agent_step_failures", "Failed agent steps on the hosts of active runs", registry=registry
    ).set(values["failures"])
    tokens = Gauge(
        "myriad_llm_tokens",
        "Language-model tokens by model and kind",
        ["model", "kind"],
        registry=registry,
    )
    for model, counts in values["tokens"].items():
        tokens.labels(model, "prompt").set(counts["prompt_tokens"])
        tokens.labels(model, "completion").set(counts["completion_tokens"])
    return registry


@router.get("/metrics")
async def metrics(request: Request, rt: RuntimeDep) -> Response:
    body = generate_latest(request.app.state.metrics) + generate_latest(_snapshot(await services.metrics(rt)))
    return Response(body, media_type=CONTENT_TYPE_LATEST)
