"""Request dependencies that the API's routes and the dashboard's pages share: the runtime, a
run's, an agent's and a survey's id in the path, a table or a survey's answers to download, and
the token that guards the API."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import BackgroundTasks, Depends, HTTPException, Path, Request, status
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from backend import services
from backend.runtime import Runtime

__all__ = [
    "WRONG_TOKEN",
    "AgentId",
    "Download",
    "ExperimentDownload",
    "ExperimentId",
    "RunId",
    "RuntimeDep",
    "SurveyDownload",
    "SurveyId",
    "require_token",
    "token_matches",
]

WRONG_TOKEN = "missing or wrong token: send `Authorization: Bearer <token>`"


def token_matches(authorization: str | None, token: str) -> bool:
    """Whether an Authorization header carries `token` as a bearer token (in constant time)."""
    scheme, _, credentials = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(credentials.strip().encode(), token.encode())


_bearer = HTTPBearer(auto_error=False, description="the MYRIAD_TOKEN, or the one printed at start")


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


def require_token(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> None:
    """The API's security scheme in the schema; `TokenGate` has already refused a wrong token
    before routing, this check stands in case a route is ever mounted outside the gate."""
    sent = None if credentials is None else f"Bearer {credentials.credentials}"
    if not token_matches(sent, request.app.state.token):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, detail=WRONG_TOKEN, headers={"WWW-Authenticate": "Bearer"}
        )


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
# Ids fit the database's 64-bit integers; larger ones are a 422, not a driver overflow.
RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a run's id")]
AgentId = Annotated[int, Path(ge=0, le=2**63 - 1, description="an agent's id within its run")]
SurveyId = Annotated[int, Path(ge=1, le=2**63 - 1, description="a survey's id")]


async def download(
    rt: RuntimeDep,
    run_id: RunId,
    background: BackgroundTasks,
    table: services.ExportTable = "rounds",
    format: services.ExportFormat = "csv",
) -> FileResponse:
    """One table of a run as a file to download (removed once sent), for the API and the pages."""
    path = await services.export_file(rt, run_id, table=table, format=format)
    background.add_task(services.remove_export, path)
    return FileResponse(path, media_type=services.EXPORT_MEDIA[format], filename=path.name)


Download = Annotated[FileResponse, Depends(download)]


async def survey_download(
    rt: RuntimeDep,
    run_id: RunId,
    survey_id: SurveyId,
    background: BackgroundTasks,
    format: services.ExportFormat = "csv",
) -> FileResponse:
    """A survey's answers as a file to download (removed once sent), for the API and the pages."""
    path = await services.survey_file(rt, run_id, survey_id, format=format)
    background.add_task(services.remove_export, path)
    return FileResponse(path, media_type=services.EXPORT_MEDIA[format], filename=path.name)


SurveyDownload = Annotated[FileResponse, Depends(survey_download)]


ExperimentId = Annotated[int, Path(ge=1, le=2**63 - 1, description="an experiment's id")]


async def experiment_download(
    rt: RuntimeDep,
    experiment_id: ExperimentId,
    background: BackgroundTasks,
    format: services.ExportFormat = "csv",
) -> FileResponse:
    """An experiment's results table (one row per run and round) as a file to download (removed
    once sent), for the API and the pages."""
    path = await services.export_results(rt, experiment_id, format=format)
    background.add_task(services.remove_export, path)
    return FileResponse(path, media_type=services.EXPORT_MEDIA[format], filename=path.name)


ExperimentDownload = Annotated[FileResponse, Depends(experiment_download)]
