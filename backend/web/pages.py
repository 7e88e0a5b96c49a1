"""Dashboard pages: the runs, and one run. Each also answers htmx with its live fragment."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from backend import services
from backend.api.deps import RunId, RuntimeDep
from backend.web.auth import require_login
from backend.web.render import page_or_fragment

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])


@router.get("/", name="runs")
async def runs_page(request: Request, rt: RuntimeDep) -> Response:
    found = await services.list_runs(rt, limit=100)
    live = {r.id: await services.live_state(rt, r.id) for r in found}
    return page_or_fragment(request, "runs.html", "runs_rows.html", {"runs": found, "live": live})


@router.get("/runs/{run_id}", name="run")
async def run_page(request: Request, rt: RuntimeDep, run_id: RunId) -> Response:
    run = await services.get_run(rt, run_id)
    rounds = await services.rounds(rt, run_id)
    context = {"run": run, "live": await services.live_state(rt, run_id), "rounds": rounds}
    return page_or_fragment(request, "run.html", "run_progress.html", context)
