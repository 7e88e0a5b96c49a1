"""The session cookie, marked Secure when the request came over HTTPS (directly, or through a
proxy whose X-Forwarded-Proto uvicorn trusts: MYRIAD_FORWARDED_ALLOW_IPS)."""

from __future__ import annotations

from functools import partial
from typing import Literal

from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["SessionCookies"]


class SessionCookies:
    """Starlette's SessionMiddleware, whose Secure flag is fixed when built, in two builds: the
    request's scheme picks one when `secure` is "auto"; True or False pick the same for all."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        secure: bool | Literal["auto"],
        secret_key: str,
        session_cookie: str,
        max_age: int,
        same_site: Literal["lax", "strict", "none"] = "lax",
    ) -> None:
        # Each option by name, not **options: then Middleware(SessionCookies, ...) is checked.
        build = partial(
            SessionMiddleware,
            app,
            secret_key=secret_key,
            session_cookie=session_cookie,
            max_age=max_age,
            same_site=same_site,
        )
        self._plain = build(https_only=secure is True)
        self._secure = build(https_only=secure is not False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        https = scope.get("scheme") in ("https", "wss")
        await (self._secure if https else self._plain)(scope, receive, send)
