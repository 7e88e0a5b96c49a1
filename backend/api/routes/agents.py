"""/api/v1/runs/{id}/agents and /events: a run's agents (paged, filtered), one agent, interviews."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import StringConstraints

from backend import services
from backend.api.bodies import JsonRoute
from backend.api.schemas import (
    ActionPublic,
    AgentDetail,
    AgentPublic,
    AgentsPublic,
    ErrorOut,
    EventPublic,
    EventsPublic,
    InterviewIn,
    InterviewOut,
    MessagePublic,
    Responses,
)
from backend.deps import AgentId, RunId, RuntimeDep

router = APIRouter(prefix="/runs/{run_id}", tags=["agents"], route_class=JsonRoute)
NOT_FOUND: Responses = {404: {"model": ErrorOut, "description": "no such run or agent"}}


@router.get("/agents", responses=NOT_FOUND)
async def list_agents(
    rt: RuntimeDep,
    run_id: RunId,
    kind: str | None = None,
    attribute: Annotated[
        list[Annotated[str, StringConstraints(pattern=r"^[^=]+=.*$")]] | None,
        Query(description="ATTR=VALUE; repeat to require several"),
    ] = None,
    host: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
    node: str | None = None,
    name: Annotated[str | None, Query(max_length=200, description="names starting with this")] = None,
    failed: Annotated[bool, Query(description="only agents that failed in the last stored round")] = False,
    sort: Literal["id", "name", "kind", "host"] = "id",
    descending: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
) -> AgentsPublic:
    """A page of the run's agents, filtered and paged over the run's arrays: a million agents stay
    fast."""
    attributes = dict(a.split("=", 1) for a in attribute or [])
    rows, count = await services.list_agents(
        rt,
        run_id,
        kind=kind,
        attributes=attributes or None,
        host=host,
        node=node,
        name=name,
        failed=failed,
        sort=sort,
        descending=descending,
        limit=limit,
        offset=offset,
    )
    return AgentsPublic(data=[AgentPublic.model_validate(r) for r in rows], count=count)


@router.get("/agents/{agent_id}", responses=NOT_FOUND)
async def get_agent(rt: RuntimeDep, run_id: RunId, agent_id: AgentId) -> AgentDetail:
    """One agent: profile, background, its recorded answers round by round, and the messages
    that reached it."""
    agent, actions = await services.get_agent(rt, run_id, agent_id)
    return AgentDetail(
        **AgentPublic.model_validate(agent).model_dump(),
        background=agent.background,
        actions=[ActionPublic.model_validate(a) for a in actions],
        messages=[MessagePublic.model_validate(m) for m in await services.messages(rt, run_id, agent)],
    )


@router.post(
    "/agents/{agent_id}/interview",
    responses=NOT_FOUND
    | {503: {"model": ErrorOut, "description": "the agent's language model did not answer"}},
)
async def interview(rt: RuntimeDep, run_id: RunId, agent_id: AgentId, body: InterviewIn) -> InterviewOut:
    """Ask one agent a question."""
    answer = await services.interview(rt, run_id, agent_id, body.question)
    return InterviewOut(agent_id=agent_id, question=body.question, answer=answer)


@router.get("/events", responses=NOT_FOUND)
async def list_events(
    rt: RuntimeDep, run_id: RunId, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> EventsPublic:
    """The run's recorded events, newest first: starts, pauses, injections, failures, takeovers."""
    rows = await services.events(rt, run_id, limit=limit)
    return EventsPublic(data=[EventPublic.model_validate(e) for e in rows], count=len(rows))
