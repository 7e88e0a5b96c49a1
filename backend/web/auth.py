"""Dashboard sign-in: the token once, then a signed, HttpOnly, SameSite session cookie."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from backend.web.csrf import verify_csrf
from backend.web.render import templates

__all__ = ["LoginRequired", "login_redirect", "require_login", "router"]

router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """The browser has no session: send it to the login page."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


def require_login(request: Request) -> None:
    if not request.session.get("signed_in"):
        raise LoginRequired(request.url.path)


def login_redirect(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    target = f"/login?next={exc.next_url}"
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)


def _safe_next(next_url: str) -> str:
    # Only paths on this site: never an absolute URL an attacker chose.
    return next_url if next_url.startswith("/") and not next_url.startswith("//") else "/"


@router.get("/login")
async def login_page(request: Request, next: str = "/", token: str | None = None) -> Response:
    """The sign-in page; `?token=` (the link printed at start) signs in at once."""
    if token is not None and secrets.compare_digest(token.encode(), request.app.state.token.encode()):
        request.session.update(signed_in=True)
        return RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)
    return templates.TemplateResponse(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login")
async def login(
    request: Request, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/"
) -> Response:
    if not secrets.compare_digest(token.encode(), request.app.state.token.encode()):
        context = {"next": _safe_next(next), "error": "That is not the token."}
        return templates.TemplateResponse(
            request, "login.html", context, status_code=status.HTTP_401_UNAUTHORIZED
        )
    request.session.clear()
    request.session.update(signed_in=True)
    return RedirectResponse(_safe_next(next), status_code=status.HTTP_303_SEE_OTHER)


@router.post("/logout", dependencies=[Depends(verify_csrf)])
async def logout(request: Request) -> Response:
    request.session.clear()
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
