"""Dashboard pages of runs: the list, one run (progress, statistics, chart, events, controls) and
its downloads. Each page also answers htmx with the fragment it targets."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, Query, Request, status
from fastapi.responses import FileResponse, RedirectResponse
from starlette.responses import Response

from agents.spec import Budget, RunSpec, SpecError
from backend import services
from backend.deps import Download, RunId, RuntimeDep
from backend.domain import IllegalTransition, RunStatus
from backend.runtime import Runtime
from backend.services import RoundRow, RoundsShown, Run
from backend.web.auth import require_login
from backend.web.csrf import verify_csrf
from backend.web.figures import figure
from backend.web.render import page_or_fragment, templates

__all__ = ["UNFINISHED", "budget_of_form", "following_context", "router"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])

UNFINISHED = (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED)


def computing_round(run: Run, live: dict[str, Any], recorded: int) -> int:
    """The round a run's worker is computing: after the newest it has stepped (its live state,
    ahead of the database by the rounds still being written) or recorded."""
    return min(max(live.get("round", 0), recorded) + 1, run.rounds)


async def runs_context(rt: Runtime) -> dict[str, Any]:
    """The runs list: like a run's page, each run's progress is its newest recorded round (the
    run's row has it, written with the round), and the live state (read for all runs at once)
    only says which round is being computed."""
    found = await services.list_runs(rt, limit=100)
    live = await services.live_states(rt, [r.id for r in found])
    computing = {r.id: computing_round(r, live.get(r.id, {}), r.round) for r in found}
    return {"runs": found, "computing": computing}


@router.get("/", name="runs")
async def runs_page(request: Request, rt: RuntimeDep) -> Response:
    return page_or_fragment(request, "runs.html", "runs_rows.html", await runs_context(rt))


@router.get("/runs")
async def runs_alias(request: Request) -> Response:
    """`/runs`, a natural guess for the list of runs, is the list of runs."""
    return RedirectResponse(request.url_for("runs"), status_code=status.HTTP_308_PERMANENT_REDIRECT)


async def live_context(rt: Runtime, run: Run, rounds: RoundsShown) -> dict[str, Any]:
    """The live part of a run's page: status, progress, controls and the statistics table.

    The progress, the table and the chart (`chart_context`) all show the newest round the
    database has, read once: the worker's live state runs ahead of it by the rounds still being
    written (seconds, for 100,000 agents), so it only says which round is being computed."""
    run_id = run.id
    spec = RunSpec.stored(run.spec)
    usage = (
        await services.usage(rt, spec, run_id, rounds.newest, rounds.usage) if spec.llm is not None else None
    )
    live = await services.live_state(rt, run_id)
    return {
        "run": run,
        "spec": spec,
        "live": live,
        "recorded": rounds.recorded,
        "computing": computing_round(run, live, rounds.recorded),
        "table": rounds.newest,
        "unfinished": run.status in UNFINISHED,
        "usage": usage,
        "round_usage": {r["round"]: r for r in usage["rounds"]} if usage else {},
    }


def chart_context(
    run: Run, rounds: RoundsShown, detail: RoundRow | None, *, following: bool
) -> dict[str, Any]:
    """The figure of round `detail` (`following`: the newest, following the run as it goes)."""
    chart = figure(detail, rounds.spread) if detail is not None else None
    return {"run": run, "chart": chart, "following": following, "last_round": rounds.recorded}


async def following_context(rt: Runtime, run_id: int) -> dict[str, Any]:
    """What a run's page shows that follows the run: its live part and the newest round's chart,
    from one read of the run, its rounds and the newest round's details."""
    run, rounds, newest = await services.run_rounds(rt, run_id)
    return await live_context(rt, run, rounds) | chart_context(run, rounds, newest, following=True)


@router.get("/runs/{run_id}", name="run")
async def run_page(request: Request, rt: RuntimeDep, run_id: RunId) -> Response:
    context = await following_context(rt, run_id)
    feed = await services.feed(rt, run_id)
    context |= {
        "run_id": run_id,
        "feed": feed,
        "after": feed[0][0] if feed else "0",
        "exports": (services.EXPORT_TABLES, services.EXPORT_FORMATS),
    }
    return page_or_fragment(request, "run.html", "run_live.html", context)


@router.get("/runs/{run_id}/chart", name="run_chart")
async def run_chart(
    request: Request, rt: RuntimeDep, run_id: RunId, round: Annotated[int | None, Query(ge=1)] = None
) -> Response:
    """The chart for one round (no round: the newest, following the run)."""
    run, rounds, detail = await services.run_rounds(rt, run_id, round)
    following = round is None or round > rounds.recorded  # a round not played yet: the newest
    context = chart_context(run, rounds, detail, following=following)
    return templates.TemplateResponse(request, "run_chart.html", context)


@router.get("/runs/{run_id}/groups", name="run_groups")
async def run_groups(
    request: Request,
    rt: RuntimeDep,
    run_id: RunId,
    round: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    """A round's statistics by kind of agent, on demand (it reads the round's recorded actions)."""
    context = {"groups": await services.groups(rt, run_id, round), "round": round}
    return templates.TemplateResponse(request, "run_groups.html", context)


@router.post("/runs/{run_id}/inject", name="run_inject", dependencies=[Depends(verify_csrf)])
async def inject(
    request: Request,
    rt: RuntimeDep,
    run_id: RunId,
    content: Annotated[str, Form(max_length=10_000)] = "",
    where: Annotated[str, Form(max_length=1_000)] = "",
    public: Annotated[bool, Form()] = False,
) -> Response:
    """The inject form: a message to the agents (those matching `where`, as ATTR=VALUE pairs
    separated by commas) or public information, delivered in the next round. What is wrong with
    the message or the filter is said beside its field."""
    run = await services.get_run(rt, run_id)
    context: dict[str, Any] = {"run": run, "content": content, "where": where, "public": public}
    errors: dict[str, str] = {}
    conditions: dict[str, str] = {}
    count = None
    try:
        conditions = _conditions(where)
        count = await services.reached(rt, run_id, conditions or None)
    except ValueError as e:
        errors["where"] = _problems(e)
    if not content.strip():
        errors["content"] = "write something to deliver"
    if not errors:
        try:
            await services.control(
                rt, run_id, "inject", content=content, where=conditions or None, public=public
            )
        except IllegalTransition as e:
            context["error"] = str(e)
        except ValueError as e:
            errors["where"] = _problems(e)
    context |= {"reach": count, "checked": bool(conditions)}
    if errors or "error" in context:
        context["errors"] = errors
        return templates.TemplateResponse(request, "run_inject.html", context, status_code=422)
    if public and not conditions:
        notice = "Delivered to everyone's public information"
    else:
        agents = "the agents" if count is None else f"{count:,} agent{'s' * (count != 1)}"
        notice = f"Sent to {agents}{' matching ' + where if conditions else ''}"
    context |= {"content": "", "notice": f"{notice} in the next round."}
    return templates.TemplateResponse(request, "run_inject.html", context)


@router.get("/runs/{run_id}/inject/reach", name="run_inject_reach")
async def inject_reach(
    request: Request, rt: RuntimeDep, run_id: RunId, where: Annotated[str, Query(max_length=1_000)] = ""
) -> Response:
    """How many agents the inject form's filter matches, or what is wrong with it, as it is typed."""
    context: dict[str, Any] = {"run": await services.get_run(rt, run_id)}
    try:
        conditions = _conditions(where)
        context |= {
            "checked": bool(conditions),
            "reach": await services.reached(rt, run_id, conditions or None),
        }
    except ValueError as e:
        context["errors"] = {"where": _problems(e)}
    return templates.TemplateResponse(request, "run_inject_reach.html", context)


def _problems(error: ValueError) -> str:
    return "; ".join(error.problems) if isinstance(error, SpecError) else str(error)


def _conditions(where: str) -> dict[str, str]:
    conditions = {}
    for part in filter(None, (p.strip() for p in where.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"“{part}” is not ATTR=VALUE")
        conditions[key.strip()] = value.strip()
    return conditions


@router.post("/runs/{run_id}/{action}", name="control", dependencies=[Depends(verify_csrf)])
async def control(
    request: Request,
    rt: RuntimeDep,
    run_id: RunId,
    action: Literal["pause", "resume", "stop"],
    tokens: Annotated[str, Form(max_length=20)] = "",
    cost: Annotated[str, Form(max_length=20)] = "",
) -> Response:
    """The run page's buttons: send the command, answer with the refreshed live part. Resuming
    may carry a new budget (`tokens`, `cost`), for a run paused because it spent its own."""
    try:
        budget = budget_of_form(tokens, cost) if action == "resume" else None
        before = await services.get_run(rt, run_id)
        after = await services.control(rt, run_id, action, budget=budget)
        notice = f"{action} sent: it takes effect at the next round boundary"
    except (IllegalTransition, ValueError) as e:
        notice = str(e)
    else:
        if before.status == RunStatus.FAILED and after.status == RunStatus.QUEUED:
            # Queued again: the whole page, so that it follows the run live once more.
            return Response(status_code=204, headers={"HX-Refresh": "true"})
    # With the chart of the same round: the page never shows two rounds at once.
    context = await following_context(rt, run_id) | {"notice": notice, "with_chart": True}
    return templates.TemplateResponse(request, "run_live.html", context)


def budget_of_form(tokens: str, cost: str) -> dict[str, float] | None:
    """A budget from a resume form's fields (None when both are empty)."""
    budget: dict[str, float] = {}
    try:
        if tokens.strip():
            budget["tokens"] = int(tokens.replace(",", ""))
        if cost.strip():
            budget["cost"] = float(cost)
    except ValueError:
        raise ValueError("a budget is a number of tokens and a cost, e.g. 200000 and 1.5") from None
    return Budget.model_validate(budget).model_dump() if budget else None


@router.get("/runs/{run_id}/export", name="export")
async def export(file: Download) -> FileResponse:
    return file
