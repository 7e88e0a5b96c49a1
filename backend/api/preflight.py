"""OPTIONS on any route: which methods it takes. Starlette answers 405 with an `Allow` naming the
one method of whichever route it tried first; a client (or a CORS preflight) needs them all."""

from __future__ import annotations

import re
from collections.abc import Sequence

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute, compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["Options"]


def _methods_by_path(routes: Sequence[BaseRoute]) -> list[tuple[re.Pattern[str], set[str]]]:
    table = []
    for route in iter_route_contexts(routes):
        if route.path is None:  # a route matched by something else (a Host): no path to answer for
            continue
        if route.methods is None:  # a mount (/static): everything under it, read-only
            table.append((re.compile(f"^{re.escape(route.path)}(/.*)?$"), {"GET", "HEAD"}))
        else:
            pattern, _, _ = compile_path(route.path)
            table.append((pattern, set(route.methods) | ({"HEAD"} if "GET" in route.methods else set())))
    return table


class Options:
    """Answers OPTIONS with 204 and `Allow`; an unknown path goes on to its 404. Cross-origin
    preflights are answered before this when CORS origins are configured (`MYRIAD_CORS_ORIGINS`),
    and get no `Access-Control-Allow-Origin` otherwise: browsers then refuse, as they should."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._table: list[tuple[re.Pattern[str], set[str]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            await self.app(scope, receive, send)
            return
        if self._table is None:  # the routes are all there by the first request
            self._table = _methods_by_path(scope["app"].routes)
        methods = set().union(*(m for pattern, m in self._table if pattern.match(scope["path"])))
        if not methods:
            await self.app(scope, receive, send)
            return
        allow = ", ".join(sorted(methods | {"OPTIONS"}))
        await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", allow.encode())]})
        await send({"type": "http.response.body", "body": b""})
