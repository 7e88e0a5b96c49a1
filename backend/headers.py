"""Security headers on every response: pages, fragments, the API, static files and errors."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["SecurityHeaders", "content_security_policy"]

# The dashboard runs no inline script and sets no inline style (its own code is in static/), so
# nothing but this site's files runs, nothing frames it, and forms post only here.
_POLICY = {
    "default-src": "'self'",
    "img-src": "'self' data:",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def content_security_policy(**more: str) -> str:
    """The dashboard's policy, with directives added or widened (`script_src="'self' ..."`) for
    a page that needs more (the API docs); a response that sets its own policy keeps it."""
    policy = _POLICY | {name.replace("_", "-"): value for name, value in more.items()}
    return "; ".join(f"{name} {value}" for name, value in policy.items())


_HEADERS = {
    "content-security-policy": content_security_policy(),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}


class SecurityHeaders:
    """Pure ASGI (not BaseHTTPMiddleware, which would buffer the live streams): it only adds
    headers to the response's start message, leaving any the app set itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
