"""The FastAPI application: the dashboard, and the REST API under /api/v1 (documented at /docs)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
from backend.api import errors
from backend.api.deps import require_token
from backend.api.gate import TokenGate
from backend.api.preflight import Options
from backend.api.routes import agents, cluster, health, metrics, runs
from backend.api.routes.metrics import RequestTimer
from backend.api.schemas import ErrorOut
from backend.api.throttle import Throttle
from backend.headers import SecurityHeaders
from backend.runtime import Runtime
from backend.settings import Settings
from backend.web import agents as agent_pages
from backend.web import auth, docs, live, new_run
from backend.web import cluster as cluster_page
from backend.web import runs as run_pages
from backend.web.auth import SESSION_SECONDS, LoginRequired, login_redirect
from backend.web.cookies import SessionCookies
from backend.web.csrf import CsrfFailed, csrf_refused
from backend.web.render import FRONTEND
from backend.workflow.worker import Worker

__all__ = ["Server", "create_app"]

log = logging.getLogger(__name__)


def _operation_id(route: APIRoute) -> str:
    return f"{route.tags[0]}-{route.name}" if route.tags else route.name


class _App(FastAPI):
    def build_middleware_stack(self) -> ASGIApp:
        # Outside Starlette's error middleware too, so that its 500 answers carry the headers.
        return SecurityHeaders(super().build_middleware_stack())


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app for `settings` (default: from the environment).

    Its lifespan opens the runtime and, when `settings.runs_worker_in_process` (the embedded
    default), drives runs in this process too; production runs `myriad worker`s beside it.
    The token is `settings.token`, or a fresh one kept in `app.state.token` for `serve` to print.
    """
    settings = settings or Settings()
    in_process = settings.runs_worker_in_process

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with Runtime(settings, ray=in_process) as rt:
            app.state.runtime = rt
            stop = asyncio.Event()
            worker = asyncio.create_task(Worker(rt).serve(stop)) if in_process else None
            try:
                yield
            finally:
                stop.set()
                if worker is not None:
                    await worker

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
    for module in (runs, agents, cluster):
        api.include_router(module.router)
    api.include_router(docs.schema_router)
    app.include_router(api)
    app.include_router(health.router)
    app.include_router(metrics.router)
    # /runs/new before /runs/{run_id}, which would refuse "new" as a run id.
    for module in (auth, docs, new_run, run_pages, agent_pages, cluster_page, live):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=FRONTEND / "static"), name="static")
    return app


class Server(uvicorn.Server):
    """uvicorn that ends the dashboard's live streams as it begins to shut down, so stopping
    never waits on a browser left open."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.config.app.state.closing.set()
        await super().shutdown(sockets)
