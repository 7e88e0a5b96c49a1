"""The API's token checked before routing, so a request without it learns nothing (not even
whether its body would parse: 401, never 422) and wrong tokens are counted per address."""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.api.schemas import ErrorOut
from backend.deps import WRONG_TOKEN, token_matches
from backend.throttle import Throttle, client_address, too_many

__all__ = ["TokenGate"]


class TokenGate:
    """Pure ASGI in front of /api/ and /metrics: the bearer token, or a 401 (429 while the
    address is throttled) before any route reads the request."""

    def __init__(self, app: ASGIApp, token: str, throttle: Throttle) -> None:
        self.app = app
        self.token = token
        self.throttle = throttle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path.startswith("/api/") or path == "/metrics"):
            await self.app(scope, receive, send)
            return
        authorization = Headers(scope=scope).get("authorization")
        address = client_address(scope)
        wait = None if authorization is None else self.throttle.retry_after(address)
        if wait is not None:
            await _refuse(429, too_many(wait), {"Retry-After": str(wait)})(scope, receive, send)
        elif not token_matches(authorization, self.token):
            if authorization is not None:  # a guess; a request with no token at all is not
                self.throttle.failed(address)
            await _refuse(401, WRONG_TOKEN, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
        else:
            await self.app(scope, receive, send)


def _refuse(code: int, detail: str, headers: dict[str, str]) -> JSONResponse:
    return JSONResponse(ErrorOut(detail=detail, errors=[]).model_dump(), status_code=code, headers=headers)
