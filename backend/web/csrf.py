"""CSRF tokens: one per session, in every form (and in htmx's headers), checked on every change."""

from __future__ import annotations

import secrets

from fastapi import Request, status
from starlette.responses import Response

__all__ = ["CsrfFailed", "csrf_refused", "csrf_token", "verify_csrf"]


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use; templates put it in every form."""
    token = request.session.get("csrf")
    if token is None:
        token = request.session["csrf"] = secrets.token_urlsafe(24)
    return token


class CsrfFailed(Exception):
    pass


async def verify_csrf(request: Request) -> None:
    """Refuse a state-changing request whose form field or X-CSRF-Token header does not carry the
    session's token (htmx sends the header; plain forms the field)."""
    expected = request.session.get("csrf")
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        field = (await request.form()).get("csrf")  # a file is no token
        sent = field if isinstance(field, str) else None
    if not expected or not isinstance(sent, str) or not secrets.compare_digest(sent, expected):
        raise CsrfFailed


def csrf_refused(request: Request, _: Exception) -> Response:
    # Imported here: the error page renders templates, whose forms need `csrf_token` above.
    from backend.web.error_page import error_page

    detail = "This form has expired: reload the page and try again."
    return error_page(request, status.HTTP_403_FORBIDDEN, detail)
