"""/api/v1/experiments: create, list, read and control experiments, their cells, the comparison
of their runs, and the tidy results table as a file."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi.responses import FileResponse

from agents.experiment import ExperimentSpec
from backend import services
from backend.api.bodies import JsonRoute
from backend.api.experiment_schemas import (
    CellPublic,
    CellRun,
    CellsPublic,
    ComparisonPublic,
    ExperimentPublic,
    ExperimentResumeIn,
    ExperimentsPublic,
)
from backend.api.routes.runs import CONFLICT, EXPORTED
from backend.api.schemas import ErrorOut, Responses
from backend.deps import ExperimentDownload, ExperimentId, RuntimeDep
from backend.runtime import Runtime
from backend.services import ExperimentRow

router = APIRouter(prefix="/experiments", tags=["experiments"], route_class=JsonRoute)

NOT_FOUND: Responses = {404: {"model": ErrorOut, "description": "no such experiment"}}


async def _public(
    rt: Runtime, experiment: ExperimentRow, progress: dict[str, Any] | None = None
) -> ExperimentPublic:
    """The experiment as the API shows it, with its runs' progress (read here unless given)."""
    progress = progress if progress is not None else await services.experiment_progress(rt, experiment)
    fields = ("id", "name", "paused", "max_parallel", "created_at", "spec")
    return ExperimentPublic.model_validate({k: getattr(experiment, k) for k in fields} | progress)


# What a client can do with the experiment it just created (OpenAPI links, as for runs).
_OPERATIONS = (
    "get_experiment", "pause_experiment", "resume_experiment", "stop_experiment", "list_cells",
    "get_results", "export_experiment",
)  # fmt: skip
CREATED: Responses = {
    201: {
        "description": "the experiment, its runs queued",
        "links": {
            name: {
                "operationId": f"experiments-{name}",
                "parameters": {"experiment_id": "$response.body#/id"},
            }
            for name in _OPERATIONS
        },
    }
}


@router.post("", status_code=status.HTTP_201_CREATED, responses=CREATED)
async def create_experiment(rt: RuntimeDep, spec: ExperimentSpec) -> ExperimentPublic:
    """Queue every run of `spec` (its factors crossed, each cell `replicates` times); workers start
    them `max_parallel` at a time."""
    experiment, _ = await services.submit_experiment(rt, spec)  # every run it plans is checked
    return await _public(rt, experiment)


@router.get("")
async def list_experiments(
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> ExperimentsPublic:
    """Experiments, newest first, with their runs' progress."""
    found = await services.list_experiments(rt, limit=limit, offset=offset)
    return ExperimentsPublic(
        data=[await _public(rt, e, progress) for e, progress in found],
        count=await services.count_experiments(rt),
    )


@router.get("/{experiment_id}", responses=NOT_FOUND)
async def get_experiment(rt: RuntimeDep, experiment_id: ExperimentId) -> ExperimentPublic:
    experiment = await services.get_experiment(rt, experiment_id)
    return await _public(rt, experiment)


def _control(action: str, summary: str) -> None:
    async def control(rt: RuntimeDep, experiment_id: ExperimentId) -> ExperimentPublic:
        experiment = await services.control_experiment(rt, experiment_id, action)
        return await _public(rt, experiment)

    control.__name__ = f"{action}_experiment"
    router.add_api_route(
        f"/{{experiment_id}}/{action}",
        control,
        methods=["POST"],
        summary=summary,
        responses=NOT_FOUND | CONFLICT,
        status_code=status.HTTP_202_ACCEPTED,
    )


_control("pause", "Pause every running run of the experiment, and keep its queued runs from starting")
_control("stop", "Stop every run of the experiment that has not ended")


@router.post("/{experiment_id}/resume", status_code=status.HTTP_202_ACCEPTED, responses=NOT_FOUND | CONFLICT)
async def resume_experiment(
    rt: RuntimeDep, experiment_id: ExperimentId, body: ExperimentResumeIn | None = None
) -> ExperimentPublic:
    """Resume the experiment's paused runs and let its queued ones start; with a `budget`, an
    experiment whose runs together spent theirs goes on with this one."""
    budget = body.budget.model_dump() if body is not None and body.budget is not None else None
    return await _public(rt, await services.control_experiment(rt, experiment_id, "resume", budget=budget))


@router.get("/{experiment_id}/cells", responses=NOT_FOUND)
async def list_cells(rt: RuntimeDep, experiment_id: ExperimentId) -> CellsPublic:
    """The experiment's cells (one combination of its factors' values each) with their runs."""
    cells = await services.cells(rt, experiment_id)
    data = [
        CellPublic(
            index=cell.index,
            label=cell.label(),
            values=cell.values,
            runs=[CellRun.model_validate(run) for run in runs],
        )
        for cell, runs in cells
    ]
    return CellsPublic(data=data, count=len(data))


@router.get("/{experiment_id}/results", responses=NOT_FOUND)
async def get_results(
    rt: RuntimeDep,
    experiment_id: ExperimentId,
    measure: Annotated[str | None, Query(min_length=1, max_length=100, pattern=r"^\w+$")] = None,
) -> ComparisonPublic:
    """The comparison of the experiment's cells: `measure` (default: the mean answer) by round with
    a 95 % confidence band across replicates, the latest answer histograms, and each factor's
    effect on the measure's final value."""
    return ComparisonPublic.model_validate(
        await services.experiment_comparison(rt, experiment_id, measure=measure)
    )


@router.get("/{experiment_id}/export", responses=NOT_FOUND | EXPORTED, response_class=FileResponse)
async def export_experiment(file: ExperimentDownload) -> FileResponse:
    """Download the tidy results table (one row per run and round: factors, replicate, seed, the
    round's statistics) as CSV, JSON or Parquet."""
    return file
