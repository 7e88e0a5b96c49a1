"""Dashboard pages of a run's agents: a table filtered and paged over the run's arrays (a million
agents' profiles are never built at once), one agent with its answers and messages, and the
interview box."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from starlette.responses import Response

from agents.spec import RunSpec
from backend import services
from backend.deps import AgentId, RunId, RuntimeDep
from backend.web.auth import require_login
from backend.web.csrf import verify_csrf
from backend.web.render import page_or_fragment, templates

__all__ = ["router"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])


@router.get("/runs/{run_id}/agents", name="agents")
async def agents_page(
    request: Request,
    rt: RuntimeDep,
    run_id: RunId,
    kind: str = "",
    attribute: Annotated[list[str] | None, Query(max_length=50)] = None,
    host: Annotated[str, Query(max_length=20)] = "",
    node: str = "",
    name: Annotated[str, Query(max_length=200)] = "",
    failed: bool = False,
    sort: Literal["id", "name", "kind", "host"] = "id",
    descending: bool = False,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000_000)] = 0,
) -> Response:
    run = await services.get_run(rt, run_id)
    spec = RunSpec.stored(run.spec)
    # The form sends what was typed; a host that is not a number is said so, not a 422 page.
    host_index = int(host) if host.strip().isdigit() and len(host.strip()) <= 7 else None
    problem = "Host is a host's number, e.g. 0." if host.strip() and host_index is None else None
    chosen = dict(a.split("=", 1) for a in attribute or [] if "=" in a)
    rows, count = await services.list_agents(
        rt,
        run_id,
        kind=kind or None,
        attributes=chosen or None,
        host=host_index,
        node=node or None,
        name=name or None,
        failed=failed,
        sort=sort,
        descending=descending,
        limit=limit,
        offset=offset,
    )
    filters: dict[str, Any] = {
        "kind": kind,
        "attribute": [f"{k}={v}" for k, v in chosen.items()],
        "host": host.strip(),
        "node": node,
        "name": name,
        "failed": failed,
        "sort": sort,
        "descending": descending,
        "limit": limit,
    }
    last = max(0, (count - 1) // limit * limit)
    base = str(request.url_for("agents", run_id=run_id))
    pages = {
        "first": _page(base, filters, 0) if offset > 0 else None,
        "previous": _page(base, filters, max(0, offset - limit)) if offset > 0 else None,
        "next": _page(base, filters, offset + limit) if offset + limit < count else None,
        "last": _page(base, filters, last) if offset < last else None,
    }
    context = {
        "run": run,
        "pages": pages,
        "kinds": [k.label for k in spec.population.kinds],
        "attributes": spec.population.attributes,
        "chosen": chosen,
        "filters": filters,
        "agents": rows,
        "count": count,
        "problem": problem,
        "offset": offset,
        "limit": limit,
    }
    return page_or_fragment(request, "agents.html", "agents_table.html", context)


def _page(base: str, filters: dict[str, Any], offset: int) -> str:
    """The table's URL with `filters` (defaults left out) at `offset`."""
    params = [
        (key, value)
        for key, value in filters.items()
        if key != "attribute" and value not in ("", False, None)
    ]
    params += [("attribute", a) for a in filters["attribute"]] + [("offset", offset)]
    return f"{base}?{urlencode(params)}"


@router.get("/runs/{run_id}/agents/{agent_id}", name="agent")
async def agent_page(request: Request, rt: RuntimeDep, run_id: RunId, agent_id: AgentId) -> Response:
    run = await services.get_run(rt, run_id)
    agent, actions = await services.get_agent(rt, run_id, agent_id)
    context = {
        "run": run,
        "agent": agent,
        "actions": actions,
        "messages": await services.messages(rt, run_id, agent),
    }
    return templates.TemplateResponse(request, "agent.html", context)


@router.post(
    "/runs/{run_id}/agents/{agent_id}/interview", name="agent_interview", dependencies=[Depends(verify_csrf)]
)
async def interview(
    request: Request,
    rt: RuntimeDep,
    run_id: RunId,
    agent_id: AgentId,
    question: Annotated[str, Form(min_length=1, max_length=2_000)],
) -> Response:
    """One question and its answer, appended to the page's transcript."""
    try:
        answer = await services.interview(rt, run_id, agent_id, question)
    except services.InterviewFailed as e:
        answer = f"({e})"
    return templates.TemplateResponse(request, "interview.html", {"question": question, "answer": answer})
