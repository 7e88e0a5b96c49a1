"""The page a person on the dashboard gets for an error: what went wrong, in the sentence the API
would give, and a way back. Clients of the API, of the live streams and of `/metrics` get the
API's JSON instead (`backend/api/errors.py` decides which)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from http import HTTPStatus

from fastapi import Request
from starlette.responses import HTMLResponse, Response

from backend.web.render import templates, wants_fragment

__all__ = ["error_page", "for_a_person"]

# Titles a person understands; other codes get their standard phrase.
TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    409: "Not now",
    422: "Cannot do that",
    500: "Something went wrong",
    503: "Unavailable for a moment",
}
_NOT_PAGES = ("/api/", "/live/", "/metrics", "/healthz", "/static/", "/openapi.json")


def for_a_person(request: Request) -> bool:
    """A browser on the dashboard: not a client of the API, of a live stream, of /metrics or
    /healthz, nor one that asks for JSON rather than HTML."""
    if request.url.path.startswith(_NOT_PAGES):
        return False
    accept = request.headers.get("accept", "")
    return not ("application/json" in accept and "text/html" not in accept)


def _back(request: Request) -> str | None:
    """The page the person came from, if it is on this site and not this very page."""
    referer = request.headers.get("referer", "")
    base = str(request.base_url)
    if referer.startswith(base) and referer != str(request.url):
        return referer
    return None


def error_page(
    request: Request,
    code: int,
    detail: str,
    problems: Sequence[tuple[str, str]] = (),
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The error as a page (as a line of text for an htmx request aimed at part of a page)."""
    if wants_fragment(request):
        # htmx swaps some answers (a 422) into the element it targets: a line, not a whole page.
        line = f'<p class="error" role="alert">{escape(detail)}</p>'
        return HTMLResponse(line, status_code=code, headers=headers)
    if request.headers.get("HX-Boosted") == "true" and request.method != "GET":
        # A boosted form's error page replaces the page but keeps its address: htmx would push
        # the form's action, which a reload would then GET.
        headers = {**(headers or {}), "HX-Push-Url": "false"}
    context = {
        "code": code,
        "title": TITLES.get(code) or HTTPStatus(code).phrase,
        "detail": detail,
        "problems": problems,
        "back": _back(request),
    }
    return templates.TemplateResponse(request, "error.html", context, status_code=code, headers=headers)
