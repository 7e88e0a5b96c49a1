"""/api/v1/runs/{id}/surveys: put questions to a run's agents, follow the answers, download them."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from fastapi.responses import FileResponse

from agents.spec import MAX_NAME
from agents.survey import SurveySpec
from backend import services
from backend.api.bodies import JsonRoute
from backend.api.routes.runs import CONFLICT, EXPORTED
from backend.api.schemas import ErrorOut, Responses
from backend.api.survey_schemas import (
    QuestionSummary,
    SurveyAnswerPublic,
    SurveyAnswersPublic,
    SurveyDetail,
    SurveyPublic,
    SurveysPublic,
)
from backend.deps import RunId, RuntimeDep, SurveyDownload, SurveyId
from backend.runtime import Runtime
from backend.services import SurveyRow

router = APIRouter(prefix="/runs/{run_id}/surveys", tags=["surveys"], route_class=JsonRoute)
NOT_FOUND: Responses = {404: {"model": ErrorOut, "description": "no such run or survey"}}
# What a client can do with the survey it just created (OpenAPI links, as for a new run).
ACCEPTED: Responses = {
    202: {
        "description": "the survey, being asked",
        "links": {
            name: {
                "operationId": f"surveys-{name}",
                "parameters": {"run_id": "$response.body#/run_id", "survey_id": "$response.body#/id"},
            }
            for name in ("get_survey", "list_answers", "export_survey")
        },
    }
}


async def _public(rt: Runtime, found: list[SurveyRow]) -> list[SurveyPublic]:
    answered = await services.answered(rt, [s.id for s in found])
    return [
        SurveyPublic.model_validate(s).model_copy(update={"answered": answered.get(s.id, 0)}) for s in found
    ]


@router.post("", status_code=status.HTTP_202_ACCEPTED, responses=NOT_FOUND | CONFLICT | ACCEPTED)
async def create_survey(rt: RuntimeDep, run_id: RunId, spec: SurveySpec) -> SurveyPublic:
    """Put questions to a sample of the run's agents; this process asks them in the background.
    It reads only what the run has stored, so it never changes the run's results."""
    (public,) = await _public(rt, [await services.create_survey(rt, run_id, spec)])
    return public


@router.get("", responses=NOT_FOUND)
async def list_surveys(rt: RuntimeDep, run_id: RunId) -> SurveysPublic:
    """The run's surveys, newest first, with their progress."""
    found = await services.list_surveys(rt, run_id)
    return SurveysPublic(data=await _public(rt, found), count=len(found))


@router.get("/{survey_id}", responses=NOT_FOUND)
async def get_survey(
    rt: RuntimeDep,
    run_id: RunId,
    survey_id: SurveyId,
    by: Annotated[
        str | None,
        Query(min_length=1, max_length=MAX_NAME, description="break down by kind or an attribute"),
    ] = None,
) -> SurveyDetail:
    """A survey, its progress and its answers counted per question (and per group, `by`)."""
    survey = await services.get_survey(rt, run_id, survey_id)
    (public,) = await _public(rt, [survey])
    counted = await services.aggregates(rt, survey, by)
    return SurveyDetail(
        **public.model_dump(), by=by, questions=[QuestionSummary.model_validate(q) for q in counted]
    )


@router.get("/{survey_id}/answers", responses=NOT_FOUND)
async def list_answers(
    rt: RuntimeDep,
    run_id: RunId,
    survey_id: SurveyId,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0, le=2**62)] = 0,
) -> SurveyAnswersPublic:
    """A page of the survey's answers, by agent then question."""
    rows, count = await services.survey_answers(rt, run_id, survey_id, limit=limit, offset=offset)
    return SurveyAnswersPublic(data=[SurveyAnswerPublic.model_validate(r) for r in rows], count=count)


@router.get("/{survey_id}/export", responses=NOT_FOUND | EXPORTED, response_class=FileResponse)
async def export_survey(file: SurveyDownload) -> FileResponse:
    """Download the survey's answers as CSV, JSON or Parquet."""
    return file
