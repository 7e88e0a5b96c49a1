"""The FastAPI application: the dashboard, and the REST API under /api/v1 (documented at /docs)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from importlib.metadata import version

import uvicorn
from fastapi import APIRouter, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from agents.spec import MAX_SPEC_BYTES
from backend import errors, services
from backend.api.gate import TokenGate
from backend.api.preflight import Options
from backend.api.routes import agents, cluster, experiments, health, metrics, runs, surveys
from backend.api.routes.metrics import RequestTimer
from backend.api.schemas import ErrorOut
from backend.deps import require_token
from backend.headers import SecurityHeaders
from backend.runtime import Runtime
from backend.settings import Settings
from backend.throttle import Throttle
from backend.web import agents as agent_pages
from backend.web import auth, docs, live, new_experiment, new_run
from backend.web import cluster as cluster_page
from backend.web import experiments as experiment_pages
from backend.web import runs as run_pages
from backend.web import surveys as survey_pages
from backend.web.auth import SESSION_SECONDS, LoginRequired, login_redirect
from backend.web.cookies import SessionCookies
from backend.web.csrf import CsrfFailed, csrf_refused
from backend.web.render import FRONTEND
from backend.worker_process import WorkerProcess

__all__ = ["Server", "create_app"]

log = logging.getLogger(__name__)

READY_PROBE_SECONDS = 0.1  # between two asks of /healthz while the service starts


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


class _App(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's error middleware too, so that its 500 answers carry the headers.
        return SecurityHeaders(super().build_middleware_stack())


def create_app(settings: Settings | None = None, *, worker: bool = False) -> FastAPI:
    """The app for `settings` (default: from the environment).

    The app never drives runs itself, so it needs no Ray: its lifespan opens the runtime (the
    database, the live layer) and, with `worker` (what `myriad serve` asks for when
    `settings.serve_starts_worker`, the embedded default), starts a `myriad worker` process beside
    it and stops it on the way out; in production `myriad worker`s run on their own.
    The token is `settings.token`, or a fresh one kept in `app.state.token` for `serve` to print.
    """
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            # The runtime first: the worker joins the embedded live layer this process owns.
            app.state.runtime = await stack.enter_async_context(Runtime(settings))
            # Before the runtime closes: the surveys this process asks end `interrupted`.
            stack.push_async_callback(services.stop_surveys)
            if worker:
                app.state.worker = await stack.enter_async_context(WorkerProcess(settings))
            yield

    token = settings.token or secrets.token_urlsafe(24)
    session_key = (
        settings.secret_key or hmac.new(token.encode(), b"myriad-session", hashlib.sha256).hexdigest()
    )
    app = _App(
        title="Myriad",
        version=version("myriad-sim"),
        description="Very large multi-agent simulations: create, watch and steer runs.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        # The docs are served from local copies, behind sign-in (backend/web/docs.py).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        middleware=[
            Middleware(
                SessionCookies,
                secure=settings.secure_cookies,
                secret_key=session_key,
                session_cookie="myriad_session",
                same_site="lax",
                max_age=SESSION_SECONDS,
            )
        ],
        # Every error has one shape, ErrorOut, and the schema says so (FastAPI's default 422 differs).
        responses={
            400: {"model": ErrorOut, "description": "a body that cannot be parsed"},
            401: {"model": ErrorOut, "description": "missing or wrong token"},
            413: {"description": f"a body over {MAX_SPEC_BYTES:,} bytes"},
            415: {"model": ErrorOut, "description": "a body that is not JSON"},
            422: {"model": ErrorOut, "description": "invalid input; `errors` names each bad field"},
            429: {"model": ErrorOut, "description": "too many failed sign-ins; see Retry-After"},
        },
        max_body_size=MAX_SPEC_BYTES,
    )
    app.state.token = token
    app.state.closing = threading.Event()  # set when the server begins to stop: live streams end
    app.state.metrics = CollectorRegistry()
    # Failed sign-ins per address, dashboard and API together.
    app.state.throttle = Throttle(limit=settings.sign_in_failures)
    app.add_middleware(TokenGate, token=token, throttle=app.state.throttle)
    app.add_middleware(RequestTimer, registry=app.state.metrics)
    # Outside the token gate: a preflight carries no token.
    app.add_middleware(Options)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=[o.strip() for o in settings.cors_origins.split(",") if o.strip()],
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID"],
        )
    errors.install(app)
    app.add_exception_handler(LoginRequired, login_redirect)
    app.add_exception_handler(CsrfFailed, csrf_refused)
    api = APIRouter(prefix="/api/v1", dependencies=[Depends(require_token)])
    for module in (runs, experiments, agents, surveys, cluster):
        api.include_router(module.router)
    api.include_router(docs.schema_router)
    app.include_router(api)
    app.include_router(health.router)
    app.include_router(metrics.router)
    # /runs/new before /runs/{run_id}, which would refuse "new" as a run id; /experiments/new too.
    pages = (
        auth, docs, new_run, new_experiment, experiment_pages, run_pages, agent_pages, survey_pages,
        cluster_page, live,
    )  # fmt: skip
    for module in pages:
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=FRONTEND / "static"), name="static")
    return app


class Server(uvicorn.Server):
    """uvicorn that ends the dashboard's live streams as it begins to shut down, so stopping
    never waits on a browser left open; and, given `on_ready`, calls it with the service's URL
    once `/healthz` answers (so a link printed then works at once)."""

    def __init__(self, config: uvicorn.Config, on_ready: Callable[[str], None] | None = None) -> None:
        super().__init__(config)
        if not isinstance(config.app, FastAPI):
            raise TypeError(f"Server serves a FastAPI app, not {config.app!r}")
        self._closing: threading.Event = config.app.state.closing
        self.on_ready = on_ready
        self._probe: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_ready is not None:
            self._probe = asyncio.create_task(self._when_healthy(self.on_ready))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._closing.set()
        if self._probe is not None:
            self._probe.cancel()
        await super().shutdown(sockets)

    async def _when_healthy(self, on_ready: Callable[[str], None]) -> None:
        host, port = self.config.host, self.servers[0].sockets[0].getsockname()[1]
        # A server on every interface answers on loopback.
        probe = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        while not await _healthy(probe, port):
            await asyncio.sleep(READY_PROBE_SECONDS)
        on_ready(f"http://{f'[{host}]' if ':' in host else host}:{port}")


async def _healthy(host: str, port: int) -> bool:
    """Whether GET /healthz at host:port answers 200."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        status = await asyncio.wait_for(reader.readline(), 5)
        return status.split()[1:2] == [b"200"]
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()
