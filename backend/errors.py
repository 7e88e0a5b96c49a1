"""One JSON shape for every error of the API (`ErrorOut`): a sentence, and the bad fields when there
are some. A person on the dashboard gets the same sentence as a page, with a way back
(`backend/web/error_page.py`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from agents.spec import SpecError, located
from backend.api.schemas import ErrorOut, FieldError
from backend.domain import IllegalTransition
from backend.services import (
    AgentNotFound,
    ExperimentNotFound,
    InterviewFailed,
    RunNotFound,
    SurveyNotFound,
    transient,
)
from backend.services.roster import RunUnreadable
from backend.web.error_page import error_page, for_a_person

__all__ = ["install"]

log = logging.getLogger(__name__)


def _error(
    request: Request,
    code: int,
    detail: str,
    errors: list[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The error as the API's JSON, or as a page for a person on the dashboard."""
    if for_a_person(request):
        problems = [(e.field, e.message) for e in errors or []]
        return error_page(request, code, detail, problems, headers=headers)
    body = ErrorOut(detail=detail, errors=errors or [])
    return JSONResponse(body.model_dump(), status_code=code, headers=headers)


def _field(loc: tuple[int | str, ...]) -> str:
    # ("body", "population", "total") -> "population.total"; query and path keep their names.
    parts = [str(p) for p in loc]
    if parts and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


async def _invalid(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for e in exc.errors():
        field, message = located(_field(tuple(e["loc"])), str(e["msg"]), top="body")
        errors.append(FieldError(field=field, message=message))
    summary = "; ".join(f"{e.field}: {e.message}" for e in errors)
    return _error(request, status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid input: {summary}", errors)


async def _refused(request: Request, exc: Exception) -> Response:
    """A valid spec the service will not run: a secret or server the operator does not allow, or
    more than the cluster holds."""
    assert isinstance(exc, SpecError)
    errors = [FieldError(field=field, message=message) for field, message in exc.by_field()]
    summary = "; ".join(exc.problems)
    return _error(request, status.HTTP_422_UNPROCESSABLE_CONTENT, f"invalid input: {summary}", errors)


async def _http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    detail = str(exc.detail)
    if exc.status_code == status.HTTP_404_NOT_FOUND and detail == "Not Found":
        detail = f"There is no page at {request.url.path}"  # Starlette's words for a path no route has
    return _error(request, exc.status_code, detail, headers=getattr(exc, "headers", None))


async def _not_found(request: Request, exc: Exception) -> Response:
    return _error(request, status.HTTP_404_NOT_FOUND, str(exc))


async def _conflict(request: Request, exc: Exception) -> Response:
    return _error(request, status.HTTP_409_CONFLICT, str(exc))


async def _unavailable(request: Request, exc: Exception) -> Response:
    return _error(request, status.HTTP_503_SERVICE_UNAVAILABLE, str(exc))


async def _service_away(request: Request, exc: Exception) -> Response:
    """The database or the live layer is away for a moment: say so (and when to try again)
    instead of a server error."""
    service = transient(exc)
    if service is None:
        return await _bug(request, exc)
    return _error(
        request,
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"the {service} is unreachable; try again in a few seconds",
        headers={"Retry-After": "5"},
    )


async def _bug(request: Request, exc: Exception) -> Response:
    """Anything else: a 500 that says no more than that (the log has the rest)."""
    log.error("unexpected error", exc_info=exc)
    return _error(request, status.HTTP_500_INTERNAL_SERVER_ERROR, "internal error")


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(SpecError, _refused)
    app.add_exception_handler(RunNotFound, _not_found)
    app.add_exception_handler(ExperimentNotFound, _not_found)
    app.add_exception_handler(AgentNotFound, _not_found)
    app.add_exception_handler(SurveyNotFound, _not_found)
    app.add_exception_handler(IllegalTransition, _conflict)
    app.add_exception_handler(RunUnreadable, _conflict)
    app.add_exception_handler(InterviewFailed, _unavailable)
    for error in (RedisError, DBAPIError, OSError):
        app.add_exception_handler(error, _service_away)
    app.add_exception_handler(Exception, _bug)  # Starlette's error middleware answers with it
