"""The session cookie, marked Secure when the request came over HTTPS (directly, or through a
proxy whose X-Forwarded-Proto uvicorn trusts: MYRIAD_FORWARDED_ALLOW_IPS)."""

from __future__ import annotations

from typing import Any, Literal

from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["SessionCookies"]


class SessionCookies:
    """Starlette's SessionMiddleware, whose Secure flag is fixed when built, in two builds: the
    request's scheme picks one when `secure` is "auto"; True or False pick the same for all."""

    def __init__(self, app: ASGIApp, *, secure: bool | Literal["auto"], **options: Any) -> None:
        self._plain = SessionMiddleware(app, https_only=secure is True, **options)
        self._secure = SessionMiddleware(app, https_only=secure is not False, **options)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        https = scope.get("scheme") in ("https", "wss")
        await (self._secure if https else self._plain)(scope, receive, send)
