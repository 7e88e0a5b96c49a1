"""The API's token checked before routing, so a request without it learns nothing (not even
whether its body would parse: 401, never 422) and wrong tokens are counted per address."""

from __future__ import annotations

import secrets

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.api.schemas import ErrorOut
from backend.api.throttle import Throttle

__all__ = ["WRONG_TOKEN", "TokenGate", "client_address", "token_matches", "too_many"]

WRONG_TOKEN = "missing or wrong token: send `Authorization: Bearer <token>`"


def token_matches(authorization: str | None, token: str) -> bool:
    """Whether an Authorization header carries `token` as a bearer token (in constant time)."""
    scheme, _, credentials = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(credentials.strip().encode(), token.encode())


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def too_many(retry_after: int) -> str:
    return f"too many failed sign-ins from this address: try again in {retry_after} s"


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
