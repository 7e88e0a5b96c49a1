"""The new-run page: the run form (`run_form`), a live preview of the profiles it makes, sample
backgrounds a model writes for them, and the run it starts."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from starlette.responses import Response

from agents.population import category_counts
from agents.spec import RunSpec, SpecError
from backend import services
from backend.deps import RuntimeDep
from backend.web import run_form
from backend.web.auth import require_login
from backend.web.csrf import verify_csrf
from backend.web.render import templates
from backend.web.run_form import DEFAULT_PRESET, PERSONAS, PRESETS, Draft

__all__ = ["router"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])

NO_MODEL = "choose a model first: name it under “Backgrounds written by” and describe it in Models (YAML)"
PERSONAS_PREVIEWED = 3


@router.get("/runs/new", name="new_run")
async def new_run_page(
    request: Request, preset: Annotated[str, Query(pattern="^[a-z0-9-]+$")] = DEFAULT_PRESET
) -> Response:
    draft = run_form.preset(preset if preset in PRESETS else DEFAULT_PRESET)
    spec, errors = run_form.check(draft)
    context = run_form.context(draft, errors, preview=await _preview(spec))
    return templates.TemplateResponse(request, "new_run.html", context)


@router.post("/runs/new/form", name="new_run_form", dependencies=[Depends(verify_csrf)])
async def new_run_form(request: Request) -> Response:
    """The form again, with a row added (`add`) or another scenario's parameters."""
    form = await request.form()
    draft = Draft.of_form(form)
    draft.add(form.get("add"))
    return templates.TemplateResponse(request, "new_run_form.html", run_form.context(draft, {}))


@router.post("/runs/new/preview", name="new_run_preview", dependencies=[Depends(verify_csrf)])
async def new_run_preview(request: Request) -> Response:
    """A few of the profiles the form would make, and every field's error, in place (out of band)."""
    draft = Draft.of_form(await request.form())
    spec, errors = run_form.check(draft)
    context = run_form.context(draft, errors, preview=await _preview(spec), oob=True)
    return templates.TemplateResponse(request, "new_run_preview.html", context)


@router.post("/runs/new/personas", name="new_run_personas", dependencies=[Depends(verify_csrf)])
async def new_run_personas(request: Request, rt: RuntimeDep) -> Response:
    """A few personas written by the form's model for its first profiles, before any run."""
    draft = Draft.of_form(await request.form())
    spec, errors = run_form.check(draft)
    context = run_form.context(draft, errors, preview=await _preview(spec), oob=True)
    if spec is not None and spec.population.persona is None:
        context["errors"] = {PERSONAS: [NO_MODEL]}
    elif spec is not None and spec.population.persona is not None:
        profiles = context["preview"]["profiles"][:PERSONAS_PREVIEWED]
        try:
            personas = await services.preview_personas(rt, spec, profiles)
        except SpecError as e:
            context["errors"] = run_form.refused(e, draft)
        else:
            context["personas"] = list(zip(profiles, personas, strict=True))
    return templates.TemplateResponse(request, "new_run_preview.html", context)


@router.post("/runs/new", name="new_run_submit", dependencies=[Depends(verify_csrf)])
async def create_run(request: Request, rt: RuntimeDep) -> Response:
    draft = Draft.of_form(await request.form())
    spec, errors = run_form.check(draft)
    if spec is None:
        context = run_form.context(draft, errors, preview=None)
        return templates.TemplateResponse(
            request, "new_run.html", context, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
        )
    try:
        run = await services.submit(rt, spec)
    except SpecError as e:  # not allowed or too big for the cluster
        context = run_form.context(draft, run_form.refused(e, draft), preview=await _preview(spec))
        return templates.TemplateResponse(
            request, "new_run.html", context, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
        )
    target = str(request.url_for("run", run_id=run.id))
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"HX-Location": target})
    return Response(status_code=status.HTTP_303_SEE_OTHER, headers={"Location": target})


async def _preview(spec: RunSpec | None) -> dict[str, Any] | None:
    """The first profiles and the exact count of each kind (dealing them out is CPU work: off the
    event loop)."""
    if spec is None:
        return None
    total = spec.population.total
    kinds = category_counts(total, {k.label or k.kind: k.share for k in spec.population.kinds})
    return {"profiles": await asyncio.to_thread(services.preview, spec), "kinds": kinds, "total": total}
