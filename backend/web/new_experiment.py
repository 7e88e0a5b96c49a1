"""The new-experiment form: the experiment spec as YAML or JSON, what it makes (runs and agents)
as it is typed, and each problem beside the field with the spec's path it concerns."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Form, Request, status
from starlette.responses import Response

from agents.experiment import ExperimentSpec
from agents.spec import MAX_SPEC_BYTES, SpecError, read_yaml, yaml_problem
from backend import services
from backend.deps import RuntimeDep
from backend.web.auth import require_login
from backend.web.csrf import verify_csrf
from backend.web.render import templates

__all__ = ["router"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])

SpecText = Annotated[str, Form(max_length=MAX_SPEC_BYTES)]

# A small experiment that runs anywhere in seconds: the paper's game at two ratios, twice each.
EXAMPLE = """\
# The paper's guess-2/3-of-the-average game with 1,000 agents for 5 rounds, at two ratios.
# Each cell (a combination of the values under `vary`) runs `replicates` times, with seeds
# derived from the experiment's `seed`. `vary` takes any dotted path into the run spec.
name: ratios
base:
  scenario:
    name: guess_two_thirds
    params: {ratio: "2/3", max_value: 100, show_last_result: true}
  rounds: 5
  population:
    total: 1000
    attributes:
      gender: {female: 50, male: 50}
      education: {"high school": 40, "bachelor's degree": 35, "master's degree": 18, "doctorate": 7}
    kinds:
      - {kind: level_k, share: 15, params: {k: 0}}
      - {kind: level_k, share: 25, params: {k: 1}}
      - {kind: level_k, share: 20, params: {k: 2}}
      - {kind: level_k, share: 10, params: {k: 3}}
      - {kind: adaptive, share: 20, params: {rate: 0.5}}
      - {kind: uniform, share: 10}
vary:
  scenario.params.ratio: ["2/3", "1/2"]
replicates: 2
seed: 2024
max_parallel: 2
"""


def _read(text: str) -> tuple[ExperimentSpec | None, list[tuple[str, str]]]:
    """The spec in `text`, or its problems as (where in the spec, what is wrong)."""
    try:
        data = read_yaml(text)
    except yaml.YAMLError as e:
        return None, [("spec", yaml_problem(e))]
    except RecursionError:
        return None, [("spec", "nested too deeply")]
    if not isinstance(data, dict):
        return None, [("spec", "an experiment spec is a mapping: name, base, vary, replicates, ...")]
    try:
        return ExperimentSpec.parse(data), []
    except SpecError as e:
        return None, e.by_field()


def _plan(spec: ExperimentSpec | None) -> dict[str, int] | None:
    """How many runs the experiment makes, and how many agents they have in all."""
    if spec is None:
        return None
    default = spec.base.population.total
    agents = sum(cell.values.get("population.total", default) for cell in spec.cells()) * spec.replicates
    return {"runs": spec.runs, "agents": agents}


async def _checked(text: str) -> dict[str, Any]:
    # Every run of the experiment is validated: up to 1,000 run specs, off the event loop.
    spec, problems = await asyncio.to_thread(_read, text)
    return {"spec": spec, "text": text, "problems": problems, "plan": _plan(spec)}


@router.get("/experiments/new", name="new_experiment")
async def new_experiment(request: Request) -> Response:
    return templates.TemplateResponse(request, "new_experiment.html", await _checked(EXAMPLE))


@router.post("/experiments/new/check", name="new_experiment_check", dependencies=[Depends(verify_csrf)])
async def check(request: Request, spec: SpecText = "") -> Response:
    """What the spec being typed makes, or its problems (the form's plan line)."""
    return templates.TemplateResponse(request, "new_experiment_plan.html", await _checked(spec))


@router.post("/experiments/new", name="new_experiment_submit", dependencies=[Depends(verify_csrf)])
async def create(request: Request, rt: RuntimeDep, spec: SpecText = "") -> Response:
    context = await _checked(spec)
    if context["spec"] is not None:
        try:
            experiment, _ = await services.submit_experiment(rt, context["spec"])
        except SpecError as e:  # a model not allowed, or runs too big for the cluster
            context |= {"problems": e.by_field(), "plan": None}
        else:
            target = str(request.url_for("experiment", experiment_id=experiment.id))
            if request.headers.get("HX-Request") == "true":
                return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"HX-Location": target})
            return Response(status_code=status.HTTP_303_SEE_OTHER, headers={"Location": target})
    return templates.TemplateResponse(
        request, "new_experiment.html", context, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
    )
