"""Dashboard pages of experiments: the list, one experiment (its grid of cells, the comparison of
its cells, the final answers, each factor's effect, pause / resume / stop, the results table to
download), and the comparison of any runs chosen on the runs list."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request, status
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import Field
from starlette.responses import Response

from agents.experiment import ExperimentSpec, shown
from backend import services
from backend.deps import ExperimentDownload, ExperimentId, RuntimeDep
from backend.domain import FINAL, IllegalTransition
from backend.runtime import Runtime
from backend.web.auth import require_login
from backend.web.csrf import verify_csrf
from backend.web.render import page_or_fragment, templates, wants_fragment
from backend.web.runs import budget_of_form

__all__ = ["live_context", "router"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])

LISTED = 100  # experiments on the list, newest first
ENDED = ("completed", "stopped", "failed")  # an experiment's status once all its runs have ended
MAX_COMPARED = 20  # runs compared at once: more lines than a chart can tell apart
RunNumber = Annotated[int, Field(ge=1, le=2**63 - 1)]


@router.get("/experiments", name="experiments")
async def experiments_page(request: Request, rt: RuntimeDep) -> Response:
    found = await services.list_experiments(rt, limit=LISTED)
    context = {
        "experiments": [(e, p | {"ended": _ended(p)}) for e, p in found],
        "count": await services.count_experiments(rt),
    }
    return templates.TemplateResponse(request, "experiments.html", context)


def _ended(progress: dict[str, Any]) -> int:
    """How many of the experiment's runs have ended."""
    return sum(n for run_status, n in progress["runs"].items() if run_status in FINAL)


async def live_context(rt: Runtime, experiment_id: int) -> dict[str, Any]:
    """What the experiment's page shows that changes as its runs go: status, progress, controls,
    the grid of cells, the charts and the effects."""
    experiment = await services.get_experiment(rt, experiment_id)
    progress = await services.experiment_progress(rt, experiment)
    cells = await services.cells(rt, experiment_id)
    comparison = await services.experiment_comparison(rt, experiment_id)
    spec = ExperimentSpec.stored(experiment.spec)
    paths = [p for factor in spec.factors() for p in factor.paths]
    return {
        "experiment": experiment,
        "progress": progress | {"ended": _ended(progress), "total": sum(progress["runs"].values())},
        "ended": progress["status"] in ENDED,
        "budget": spec.budget,
        "paths": paths,
        "grid": [([shown(cell.values[p]) for p in paths], runs) for cell, runs in cells],
        "comparison": comparison,
        "chart": comparison_chart(comparison),
        "unit": "cell",
        "effects": comparison["effects"],
    }


def comparison_chart(comparison: dict[str, Any]) -> dict[str, Any]:
    """What charts.js draws: each series' mean, band and target on the rounds of all series (None
    where a series has no value), and each series' final answers."""
    rounds = sorted({r for s in comparison["series"] for r in s["band"]["rounds"]})

    def aligned(band: dict[str, Any] | None, key: str) -> list[float | None] | None:
        if band is None:
            return None
        at = dict(zip(band["rounds"], band[key], strict=True))
        return [at.get(r) for r in rounds]

    return {
        "measure": comparison["measure"],
        "rounds": rounds,
        "series": [
            {
                "label": s["label"],
                "mean": aligned(s["band"], "mean"),
                "low": aligned(s["band"], "low"),
                "high": aligned(s["band"], "high"),
                "target": aligned(s["target"], "mean"),
            }
            for s in comparison["series"]
        ],
        # One small chart per series: its final answers, summed over its runs.
        "finals": [
            {"label": s["label"], "histogram": s["histogram"], "runs": s["final_runs"]}
            for s in comparison["series"]
            if s["histogram"] is not None
        ],
    }


@router.get("/experiments/{experiment_id}", name="experiment")
async def experiment_page(request: Request, rt: RuntimeDep, experiment_id: ExperimentId) -> Response:
    context = await live_context(rt, experiment_id) | {"formats": services.EXPORT_FORMATS}
    return page_or_fragment(request, "experiment.html", "experiment_live.html", context)


@router.post(
    "/experiments/{experiment_id}/{action}", name="experiment_control", dependencies=[Depends(verify_csrf)]
)
async def control(
    request: Request,
    rt: RuntimeDep,
    experiment_id: ExperimentId,
    action: Literal["pause", "resume", "stop"],
    tokens: Annotated[str, Form(max_length=20)] = "",
    cost: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """The experiment's buttons: the command goes to all its runs at once; the answer is its live
    part with what became of it (a form sent without htmx goes back to the page). Resuming may
    carry a new budget for all its runs (`tokens`, `cost`), for an experiment that spent its own."""
    try:
        budget = budget_of_form(tokens, cost) if action == "resume" else None
        await services.control_experiment(rt, experiment_id, action, budget=budget)
        notice = f"{action} sent to every run concerned: it takes effect at their next round boundary"
    except (IllegalTransition, ValueError) as e:
        notice = str(e)
    if not wants_fragment(request):
        target = request.url_for("experiment", experiment_id=experiment_id)
        return RedirectResponse(target, status_code=status.HTTP_303_SEE_OTHER)
    context = await live_context(rt, experiment_id) | {"notice": notice}
    return templates.TemplateResponse(request, "experiment_live.html", context)


@router.get("/experiments/{experiment_id}/export", name="experiment_export")
async def export(file: ExperimentDownload) -> FileResponse:
    """The tidy results table, one row per run and round (removed once sent)."""
    return file


@router.get("/runs/compare", name="compare_runs")
async def compare_runs(
    request: Request,
    rt: RuntimeDep,
    ids: Annotated[list[RunNumber], Query(min_length=1, max_length=MAX_COMPARED)],
) -> Response:
    """Runs chosen on the runs list, side by side: one line per run."""
    runs = [await services.get_run(rt, run_id) for run_id in sorted(set(ids))]
    comparison = await services.compare(rt, runs)
    context = {"runs": runs, "comparison": comparison, "chart": comparison_chart(comparison), "unit": "run"}
    return templates.TemplateResponse(request, "compare.html", context)
