"""Templates, and the one rule for pages and fragments.

A URL answers with its full page, or with just the fragment an htmx request targets: a fragment
only for a targeted htmx request that is neither boosted navigation nor a history restore; `Vary`
names the headers read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from backend.web.csrf import csrf_token

__all__ = ["FRONTEND", "page_or_fragment", "render", "templates"]

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"


def _csrf(request: Request) -> dict[str, Any]:
    return {"csrf": csrf_token(request)}


templates = Jinja2Templates(directory=FRONTEND / "templates", context_processors=[_csrf])


def wants_fragment(request: Request) -> bool:
    headers = request.headers
    return (
        headers.get("HX-Request") == "true"
        and "HX-Target" in headers
        and headers.get("HX-Boosted") != "true"
        and headers.get("HX-History-Restore-Request") != "true"
    )


def page_or_fragment(request: Request, page: str, fragment: str, context: dict[str, Any]) -> Response:
    response = templates.TemplateResponse(request, fragment if wants_fragment(request) else page, context)
    response.headers["Vary"] = "HX-Request, HX-Target, HX-Boosted, HX-History-Restore-Request"
    return response


def render(request: Request, name: str, context: dict[str, Any]) -> str:
    """A template rendered to text, for a server-sent event."""
    return templates.get_template(name).render({"request": request, **_csrf(request), **context})
