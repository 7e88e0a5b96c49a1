"""One JSON shape for every error of the API (`ErrorOut`): a sentence, and the bad fields when there
are some. A person on the dashboard who asks for something that is not there gets a page saying so."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from agents.spec import SpecError, located
from backend.api.schemas import ErrorOut, FieldError
from backend.services import AgentNotFound, InterviewFailed, RunNotFound
from backend.web.render import templates
from backend.workflow.lifecycle import IllegalTransition
from backend.workflow.outage import transient

__all__ = ["install"]

log = logging.getLogger(__name__)


def _error(code: int, detail: str, errors: list[FieldError] | None = None, headers=None) -> JSONResponse:  # type: ignore[no-untyped-def]
    body = ErrorOut(detail=detail, errors=errors or [])
    return JSONResponse(body.model_dump(), status_code=code, headers=headers)


def _field(loc: tuple[int | str, ...]) -> str:
    # ("body", "population", "total") -> "population.total"; query and path keep their names.
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _invalid(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for e in exc.errors():
        field, message = located(_field(tuple(e["loc"])), str(e["msg"]), top="body")
        errors.append(FieldError(field=field, message=message))
    summary = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid input: {summary}", errors)


async def _refused(_: Request, exc: Exception) -> JSONResponse:
    """A valid spec the service will not run: a secret or server the operator does not allow, or
    more than the cluster holds."""
    assert isinstance(exc, SpecError)
    errors = [FieldError(field=field, message=message) for field, message in exc.by_field()]
    summary = "; ".join(exc.problems)
    return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid input: {summary}", errors)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_404_NOT_FOUND and _for_a_person(request):
        return _page_not_found(request, f"There is no page at {request.url.path}")
    return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))


def _for_a_person(request: Request) -> bool:
    """A browser on the dashboard, not a client of the API (or of /metrics, /healthz)."""
    path = request.url.path
    return not path.startswith(("/api/", "/metrics", "/healthz", "/static/"))


def _page_not_found(request: Request, detail: str) -> Response:
    return templates.TemplateResponse(
        request, "not_found.html", {"detail": detail}, status_code=status.HTTP_404_NOT_FOUND
    )


async def _not_found(request: Request, exc: Exception) -> Response:
    if _for_a_person(request):
        return _page_not_found(request, str(exc))
    return _error(status.HTTP_404_NOT_FOUND, str(exc))


async def _conflict(_: Request, exc: Exception) -> JSONResponse:
    return _error(status.HTTP_409_CONFLICT, str(exc))


async def _unavailable(_: Request, exc: Exception) -> JSONResponse:
    return _error(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc))


async def _service_away(_: Request, exc: Exception) -> JSONResponse:
    """The database or the live layer is away for a moment: say so (and when to try again)
    instead of a server error."""
    service = transient(exc)
    if service is None:
        log.error("unexpected error", exc_info=exc)
        return _error(status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error")
    return _error(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"the {service} is unreachable; try again in a few seconds",
        headers={"Retry-After": "5"},
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(SpecError, _refused)
    app.add_exception_handler(RunNotFound, _not_found)
    app.add_exception_handler(AgentNotFound, _not_found)
    app.add_exception_handler(IllegalTransition, _conflict)
    app.add_exception_handler(InterviewFailed, _unavailable)
    for error in (RedisError, DBAPIError, OSError):
        app.add_exception_handler(error, _service_away)
