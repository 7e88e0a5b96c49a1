"""Templates, and the one rule for pages and fragments.

A URL answers with its full page, or with just the fragment an htmx request targets: a fragment
only for a targeted htmx request that is neither boosted navigation nor a history restore; `Vary`
names the headers read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.templating import Jinja2Templates
from starlette.datastructures import URL, URLPath
from starlette.responses import Response

from backend.web.csrf import csrf_token

__all__ = ["FRONTEND", "page_or_fragment", "render", "templates"]

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"


def _csrf(request: Request) -> dict[str, Any]:
    return {"csrf": csrf_token(request)}


# The URL paths templates have asked for, kept on their router: (route name, path parameters) ->
# path. Building one walks every route (~0.25 ms); a run's page asks for about 27. Routes are
# fixed once the app is built, so a path, once found, stays right; the cache is cleared when full.
_PATHS = "_myriad_url_paths"
_MAX_PATHS = 10_000


def url_path_for(request: Request, name: str, /, **path_params: Any) -> URLPath:
    """The path of route `name` with `path_params`, as `request.url_for` finds it, remembered."""
    router = request.scope.get("router") or request.scope["app"]
    paths: dict[tuple[str, tuple[tuple[str, Any], ...]], URLPath] | None = getattr(router, _PATHS, None)
    if paths is None:
        paths = {}
        setattr(router, _PATHS, paths)
    key = (name, tuple(sorted(path_params.items())))
    try:
        path = paths.get(key)
    except TypeError:  # a parameter that cannot be a key: not remembered
        return router.url_path_for(name, **path_params)
    if path is None:
        if len(paths) >= _MAX_PATHS:
            paths.clear()
        path = paths[key] = router.url_path_for(name, **path_params)
    return path


@jinja2.pass_context
def _url_for(context: dict[str, Any], name: str, /, **path_params: Any) -> URL:
    """Templates' `url_for`: what Starlette's gives (an absolute URL), from remembered paths."""
    request: Request = context["request"]
    return url_path_for(request, name, **path_params).make_absolute_url(base_url=request.base_url)


# Templates are compiled once: no check of their files' times at every render (restart to see
# an edited template).
_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(FRONTEND / "templates"),
    autoescape=jinja2.select_autoescape(),
    auto_reload=False,
)
_env.globals["url_for"] = _url_for
templates = Jinja2Templates(env=_env, context_processors=[_csrf])


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
