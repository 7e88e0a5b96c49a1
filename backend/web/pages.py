"""Dashboard pages: the runs, and one run. Each also answers htmx with its live fragment."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from backend import services
from backend.api.deps import RunId, RuntimeDep
from backend.runtime import Runtime
from backend.web.auth import require_login
from backend.web.csrf import verify_csrf
from backend.web.render import page_or_fragment, templates
from backend.workflow.lifecycle import IllegalTransition

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])


@router.get("/", name="runs")
async def runs_page(request: Request, rt: RuntimeDep) -> Response:
    found = await services.list_runs(rt, limit=100)
    live = {r.id: await services.live_state(rt, r.id) for r in found}
    return page_or_fragment(request, "runs.html", "runs_rows.html", {"runs": found, "live": live})


async def _run_context(rt: Runtime, run_id: int) -> dict[str, Any]:
    """What the run page and its live part show."""
    return {
        "run": await services.get_run(rt, run_id),
        "live": await services.live_state(rt, run_id),
        "rounds": await services.rounds(rt, run_id),
    }


@router.get("/runs/{run_id}", name="run")
async def run_page(request: Request, rt: RuntimeDep, run_id: RunId) -> Response:
    return page_or_fragment(request, "run.html", "run_progress.html", await _run_context(rt, run_id))


@router.post("/runs/{run_id}/{action}", name="control", dependencies=[Depends(verify_csrf)])
async def control(
    request: Request, rt: RuntimeDep, run_id: RunId, action: Literal["pause", "resume", "stop"]
) -> Response:
    """The run page's buttons: send the command, answer with the refreshed live part."""
    try:
        await services.control(rt, run_id, action)
        notice = f"{action} sent: it takes effect at the next round boundary"
    except IllegalTransition as e:
        notice = str(e)
    context = await _run_context(rt, run_id) | {"notice": notice}
    return templates.TemplateResponse(request, "run_progress.html", context)
