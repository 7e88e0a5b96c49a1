"""The API's documentation, Swagger UI and ReDoc, from this site's own copies (npm, like htmx),
behind the dashboard's sign-in; the schema also at /api/v1/openapi.json behind the API token, for
client generators."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from backend.headers import content_security_policy
from backend.web.auth import require_login

__all__ = ["router", "schema_router"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])
schema_router = APIRouter(include_in_schema=False)  # under /api/v1: the token guards it

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _with_own_policy(page: HTMLResponse) -> HTMLResponse:
    """FastAPI's pages start Swagger UI with an inline script and ReDoc injects its styles: allow
    exactly that script (by its hash), inline styles, and ReDoc's search worker (a blob: URL)."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(bytes(page.body).decode())
    ]
    page.headers["Content-Security-Policy"] = content_security_policy(
        script_src=" ".join(["'self'", *hashes]),
        style_src="'self' 'unsafe-inline'",
        worker_src="'self' blob:",
    )
    return page


def _static(request: Request, name: str) -> str:
    return str(request.url_for("static", path=f"vendor/{name}"))


@router.get("/openapi.json", name="openapi")
@schema_router.get("/openapi.json", name="api_openapi")
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", name="swagger_ui")
async def swagger_ui(request: Request) -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url=str(request.url_for("openapi")),
        title=f"{request.app.title} API",
        swagger_js_url=_static(request, "swagger-ui-bundle.js"),
        swagger_css_url=_static(request, "swagger-ui.css"),
        swagger_favicon_url="data:,",
    )
    return _with_own_policy(page)


@router.get("/redoc", name="redoc")
async def redoc(request: Request) -> HTMLResponse:
    page = get_redoc_html(
        openapi_url=str(request.url_for("openapi")),
        title=f"{request.app.title} API",
        redoc_js_url=_static(request, "redoc.standalone.js"),
        redoc_favicon_url="data:,",
        with_google_fonts=False,
    )
    return _with_own_policy(page)
