"""/api/v1/runs: create, list, read, control, delete and export runs, and read their rounds."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, status
from fastapi.responses import FileResponse

from agents.spec import RunSpec
from backend import services
from backend.api.bodies import JsonRoute
from backend.api.schemas import (
    ErrorOut,
    GroupsPublic,
    GroupStats,
    InjectIn,
    Responses,
    ResumeIn,
    RoundPublic,
    RoundsPublic,
    RunPublic,
    RunsPublic,
    UsagePublic,
)
from backend.deps import Download, RunId, RuntimeDep
from backend.domain import RunStatus
from backend.runtime import Runtime
from backend.services import Run

router = APIRouter(prefix="/runs", tags=["runs"], route_class=JsonRoute)

NOT_FOUND: Responses = {404: {"model": ErrorOut, "description": "no such run"}}
CONFLICT: Responses = {409: {"model": ErrorOut, "description": "not allowed in the run's current status"}}


async def _public(rt: Runtime, run: Run, live: dict[str, Any] | None = None) -> RunPublic:
    """The run as the API shows it, with its live state (read here unless given)."""
    public = RunPublic.model_validate(run, context={"stored": True})  # checked when submitted
    public.live = await services.live_state(rt, run.id) if live is None else live
    return public


# What a client can do with the run it just created (OpenAPI links: generated clients and
# stateful tests follow them).
_RUN_OPERATIONS = (
    "get_run", "delete_run", "pause_run", "stop_run", "resume_run", "list_groups", "get_usage",
    "inject", "list_rounds", "export_run",
)  # fmt: skip
CREATED: Responses = {
    201: {
        "description": "the run, queued",
        "links": {
            name: {"operationId": f"runs-{name}", "parameters": {"run_id": "$response.body#/id"}}
            for name in _RUN_OPERATIONS
        }
        | {
            name: {"operationId": f"agents-{name}", "parameters": {"run_id": "$response.body#/id"}}
            for name in ("list_agents", "list_events")
        },
    }
}


@router.post("", status_code=status.HTTP_201_CREATED, responses=CREATED)
async def create_run(rt: RuntimeDep, spec: RunSpec) -> RunPublic:
    """Queue a run of `spec`; a worker claims it."""
    return await _public(rt, await services.submit(rt, spec))


@router.get("")
async def list_runs(
    rt: RuntimeDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
    status: RunStatus | None = None,
) -> RunsPublic:
    """Runs, newest first."""
    found = await services.list_runs(rt, limit=limit, offset=offset, status=status)
    count = await services.count_runs(rt, status=status)
    live = await services.live_states(rt, [r.id for r in found])  # one round trip, not one a run
    return RunsPublic(data=[await _public(rt, r, live[r.id]) for r in found], count=count)


@router.get("/{run_id}", responses=NOT_FOUND)
async def get_run(rt: RuntimeDep, run_id: RunId) -> RunPublic:
    return await _public(rt, await services.get_run(rt, run_id))


@router.delete("/{run_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND | CONFLICT)
async def delete_run(rt: RuntimeDep, run_id: RunId) -> None:
    """Delete a run that is not running or paused, with everything it recorded."""
    await services.delete_run(rt, run_id)


def _control(action: str, summary: str) -> None:
    async def control(rt: RuntimeDep, run_id: RunId) -> RunPublic:
        return await _public(rt, await services.control(rt, run_id, action))

    control.__name__ = f"{action}_run"
    router.add_api_route(
        f"/{{run_id}}/{action}",
        control,
        methods=["POST"],
        summary=summary,
        responses=NOT_FOUND | CONFLICT,
        status_code=status.HTTP_202_ACCEPTED,
    )


_control("pause", "Pause a running run at its next round boundary")
_control("stop", "Stop a run (a queued one at once, a running one at its next round boundary)")


@router.post("/{run_id}/resume", status_code=status.HTTP_202_ACCEPTED, responses=NOT_FOUND | CONFLICT)
async def resume_run(rt: RuntimeDep, run_id: RunId, body: ResumeIn | None = None) -> RunPublic:
    """Resume a paused run; with a `budget`, one paused for spending its budget goes on with this one."""
    budget = body.budget.model_dump() if body is not None and body.budget is not None else None
    return await _public(rt, await services.control(rt, run_id, "resume", budget=budget))


@router.get("/{run_id}/groups", responses=NOT_FOUND)
async def list_groups(
    rt: RuntimeDep, run_id: RunId, round: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None
) -> GroupsPublic:
    """The round statistics by kind of agent (each share of the population), from the recorded
    actions: compare models, prompts or rules mixed in one run."""
    rows = await services.groups(rt, run_id, round)
    return GroupsPublic(data=[GroupStats.model_validate(r) for r in rows], count=len(rows))


@router.get("/{run_id}/usage", responses=NOT_FOUND)
async def get_usage(rt: RuntimeDep, run_id: RunId) -> UsagePublic:
    """The run's language-model use per round, per model and in all, with its cost."""
    run = await services.get_run(rt, run_id)
    rows = await services.rounds(rt, run_id, details=False)
    return UsagePublic.model_validate(await services.usage(rt, RunSpec.stored(run.spec), run_id, rows))


@router.post("/{run_id}/inject", status_code=status.HTTP_202_ACCEPTED, responses=NOT_FOUND | CONFLICT)
async def inject(rt: RuntimeDep, run_id: RunId, body: InjectIn) -> RunPublic:
    """Deliver a message (or public information) to the run's agents in its next round."""
    run = await services.control(rt, run_id, "inject", **body.model_dump())
    return await _public(rt, run)


@router.get("/{run_id}/rounds", responses=NOT_FOUND)
async def list_rounds(rt: RuntimeDep, run_id: RunId) -> RoundsPublic:
    """Every stored round of the run: the scenario's statistics, histogram, winners, timings."""
    rows = await services.rounds(rt, run_id)
    return RoundsPublic(data=[RoundPublic.model_validate(r) for r in rows], count=len(rows))


# A file in the format asked for: a client gets its bytes (or the rows, for JSON), not nothing.
_FILE = {"type": "string", "format": "binary"}
EXPORTED: Responses = {
    200: {
        "description": "the table as a file (Content-Disposition names it)",
        "content": {
            services.EXPORT_MEDIA["csv"]: {"schema": {"type": "string"}},  # text: a client reads it as such
            services.EXPORT_MEDIA["json"]: {"schema": {"type": "array", "items": {"type": "object"}}},
            services.EXPORT_MEDIA["parquet"]: {"schema": _FILE},
        },
    }
}


@router.get("/{run_id}/export", responses=NOT_FOUND | EXPORTED, response_class=FileResponse)
async def export_run(file: Download) -> FileResponse:
    """Download one table of the run (rounds, actions, agents or events) as CSV, JSON or Parquet."""
    return file
