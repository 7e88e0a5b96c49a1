"""Dashboard sign-in: the token once, then a signed, HttpOnly, SameSite session cookie that names
a sign-in recorded in the database, so signing out (here or everywhere) revokes the cookie in
every API process at once."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, status
from fastapi.responses import RedirectResponse
from starlette.responses import Response

from backend import services
from backend.deps import RuntimeDep
from backend.throttle import client_address, too_many
from backend.web.csrf import verify_csrf
from backend.web.render import templates

__all__ = ["SESSION_SECONDS", "LoginRequired", "login_redirect", "require_login", "router"]

SESSION_SECONDS = 14 * 24 * 3600  # a session cookie's life, and its sign-in's

router = APIRouter(include_in_schema=False)


class LoginRequired(Exception):
    """The browser has no session: send it to the login page."""

    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


async def require_login(request: Request, rt: RuntimeDep) -> None:
    """A signed cookie is not enough: its sign-in must still be recorded (one primary-key lookup)."""
    sign_in = request.session.get("sign_in")
    if not isinstance(sign_in, str) or not await services.signed_in(rt, sign_in):
        request.session.clear()  # a revoked cookie is dropped with the redirect
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


def _login_page(request: Request, next_url: str, error: str | None = None, code: int = 200) -> Response:
    context = {"next": _safe_next(next_url), "error": error}
    return templates.TemplateResponse(request, "login.html", context, status_code=code)


async def _sign_in(request: Request, rt: RuntimeDep, token: str, next_url: str) -> Response:
    """Check a token sent to sign in: counted per address when wrong, refused (429) while the
    address has failed too often."""
    address, throttle = client_address(request.scope), request.app.state.throttle
    wait = throttle.retry_after(address)
    if wait is not None:
        response = _login_page(request, next_url, too_many(wait), status.HTTP_429_TOO_MANY_REQUESTS)
        response.headers["Retry-After"] = str(wait)
        return response
    if not secrets.compare_digest(token.encode(), request.app.state.token.encode()):
        throttle.failed(address)
        return _login_page(request, next_url, "That is not the token.", status.HTTP_401_UNAUTHORIZED)
    request.session.clear()  # a fresh session (and CSRF token) for each sign-in
    request.session["sign_in"] = await services.sign_in(rt, max_age=SESSION_SECONDS)
    return RedirectResponse(_safe_next(next_url), status_code=status.HTTP_303_SEE_OTHER)


@router.get("/login")
async def login_page(request: Request, rt: RuntimeDep, next: str = "/", token: str | None = None) -> Response:
    """The sign-in page; `?token=` (the link printed at start) signs in at once."""
    if token is not None:
        return await _sign_in(request, rt, token, next)
    return _login_page(request, next)


@router.post("/login")
async def login(
    request: Request, rt: RuntimeDep, token: Annotated[str, Form()], next: Annotated[str, Form()] = "/"
) -> Response:
    return await _sign_in(request, rt, token, next)


@router.post("/logout", dependencies=[Depends(require_login), Depends(verify_csrf)])
async def logout(request: Request, rt: RuntimeDep) -> Response:
    await services.sign_out(rt, request.session["sign_in"])
    request.session.clear()
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)


@router.post("/logout/everywhere", dependencies=[Depends(require_login), Depends(verify_csrf)])
async def logout_everywhere(request: Request, rt: RuntimeDep) -> Response:
    """Sign every browser out, this one too (a cookie that may have leaked is useless after)."""
    await services.sign_out_everywhere(rt)
    request.session.clear()
    return RedirectResponse("/login", status_code=status.HTTP_303_SEE_OTHER)
