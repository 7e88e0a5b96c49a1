"""The new-experiment form: the run form (the base every run starts from) plus a factor editor,
replicates, seed, runs at a time and a budget; what it makes (runs and agents) as it is filled in,
each problem beside its field. Or an experiment spec pasted as YAML or JSON."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Form, Query, Request, status
from starlette.datastructures import FormData
from starlette.responses import Response

from agents.experiment import ExperimentSpec
from agents.spec import MAX_SPEC_BYTES, SpecError, read_yaml, yaml_problem
from backend import services
from backend.deps import RuntimeDep
from backend.web import run_form
from backend.web.auth import require_login
from backend.web.csrf import verify_csrf
from backend.web.render import templates
from backend.web.run_form import PERSONAS, PRESETS, Draft, budget_of, entry, numeric, put, rows, yaml_of

__all__ = ["router"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])

SpecText = Annotated[str, Form(max_length=MAX_SPEC_BYTES)]
DEFAULT_PRESET = "paper-1k"  # four runs of 1,000 agents: an example that runs anywhere in seconds
EXAMPLE_FACTOR = ("scenario.params.ratio", "2/3, 1/2", "")  # where the base's scenario has a ratio
FACTORS = "factors"  # the slot beside the factor editor; a row's is factors.N


@dataclasses.dataclass
class ExperimentDraft:
    """The form as filled in: the base run's fields, and the experiment's own, as typed. The
    base's name and seed are the experiment's (each run is named after it, its seed derived)."""

    base: Draft
    # Each: a dotted path into the run spec, its values comma-separated, and its zip group (paths
    # of one group move together instead of crossing; none: crossed).
    factors: list[tuple[str, str, str]]
    replicates: str = "2"
    max_parallel: str = "2"
    budget_tokens: str = ""
    budget_cost: str = ""

    @classmethod
    def of_base(cls, base: Draft) -> ExperimentDraft:
        """An experiment of `base`, with an example factor where it applies."""
        return cls(base, [EXAMPLE_FACTOR] if "ratio" in run_form.fields(base.scenario) else [])

    @classmethod
    def of_form(cls, form: FormData) -> ExperimentDraft:
        factors = [
            (
                entry(form, f"factor.{i}.path"),
                entry(form, f"factor.{i}.values"),
                entry(form, f"factor.{i}.zip"),
            )
            for i in rows(form, "factor", "path")
        ]
        # A row cleared of its path is removed.
        return cls(
            base=Draft.of_form(form),
            factors=[factor for factor in factors if factor[0]],
            replicates=entry(form, "replicates"),
            max_parallel=entry(form, "max_parallel"),
            budget_tokens=entry(form, "experiment_tokens"),
            budget_cost=entry(form, "experiment_cost"),
        )

    def spec(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The experiment spec's data, and what could not even be read, where the spec has it."""
        base, unread = self.base.spec()
        problems = {f"base.{where}": what for where, what in unread.items()}
        vary: dict[str, Any] = {}
        zipped: dict[str, dict[str, Any]] = {group: {} for group in self._groups()}
        for i, (path, text, group) in enumerate(self.factors):
            # Each value read as YAML: 2/3 stays text, 0.5 is a number, [a, b] a list.
            values = yaml_of(f"[{text}]", f"{FACTORS}.{i}", problems)
            if any(earlier == path for earlier, _, _ in self.factors[:i]):
                problems[f"{FACTORS}.{i}"] = f"{path} is varied in an earlier row"
            elif values == []:
                problems[f"{FACTORS}.{i}"] = "give it one value or more"
            elif values is not None:
                (zipped[group] if group else vary)[path] = values
        data: dict[str, Any] = {
            "name": self.base.name,
            "base": base,
            "vary": vary,
            "replicates": numeric(self.replicates, "replicates", problems),
            "seed": base["seed"],
            "max_parallel": numeric(self.max_parallel, "max_parallel", problems),
        }
        if zipped:
            data["zip"] = list(zipped.values())
        if budget := budget_of(self.budget_tokens, self.budget_cost, problems):
            data["budget"] = budget
        return data, problems

    def slots(self) -> list[str]:
        """Every place the form shows an error (the base's but the personas button, not shown)."""
        own = [f"experiment.{f}" for f in ("replicates", "max_parallel", "budget.tokens", "budget.cost")]
        rows = [f"{FACTORS}.{i}" for i in range(len(self.factors))]
        return [s for s in self.base.slots() if s != PERSONAS] + own + [FACTORS, *rows]

    def place(self, problems: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
        """Each problem of the experiment spec beside its field: the base's as the run form places
        them, a factor's beside its row, the experiment's own beside theirs."""
        placed: dict[str, list[str]] = {}
        base = []
        for where, what in problems:
            if where.startswith("base."):
                base.append((where.removeprefix("base."), what))
            else:
                put(placed, self.slots(), self._slot(where), what)
        for slot, messages in run_form.place(base, self.base).items():
            placed.setdefault(slot, []).extend(messages)
        return placed

    def _groups(self) -> list[str]:
        """The zip groups, in the order the spec's `zip` lists them."""
        return list(dict.fromkeys(group for _, _, group in self.factors if group))

    def _slot(self, where: str) -> str:
        """The slot of the problem the spec has at `where`: a factor's row, else its own field."""
        if where.startswith(f"{FACTORS}.") or where in ("name", "seed"):
            return where
        parts = where.split(".")
        if parts[0] not in ("vary", "zip"):
            return f"experiment.{where}"
        groups = self._groups()
        for i, (path, _, group) in enumerate(self.factors):
            at = f"zip.{groups.index(group)}" if group else "vary"  # the factor's place in the spec
            if f"{where}.".startswith(f"{at}.{path}."):
                return f"{FACTORS}.{i}"
        # A zip group's own problem (its lists' lengths, a run one of its levels makes invalid):
        # at its first row.
        if parts[0] == "zip" and parts[1:] and parts[1].isdigit() and int(parts[1]) < len(groups):
            return f"{FACTORS}.{[group for _, _, group in self.factors].index(groups[int(parts[1])])}"
        return FACTORS


def _checked(draft: ExperimentDraft) -> tuple[ExperimentSpec | None, dict[str, list[str]]]:
    data, unread = draft.spec()
    if unread:
        return None, draft.place(unread.items())
    try:
        return ExperimentSpec.parse(data), {}
    except SpecError as e:
        return None, draft.place(e.by_field())


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


async def _form(draft: ExperimentDraft, **extra: Any) -> dict[str, Any]:
    """The form's context: the draft, what it makes or its problems by field. Every run of the
    experiment is validated (up to 1,000 run specs): off the event loop."""
    spec, errors = await asyncio.to_thread(_checked, draft)
    return run_form.context(draft.base, errors, experiment=draft, spec=spec, plan=_plan(spec)) | extra


async def _pasted(text: str) -> dict[str, Any]:
    """The pasted spec's part of the page: the text, what it makes, or its problems."""
    spec, problems = await asyncio.to_thread(_read, text)
    return {"pasted_spec": spec, "text": text, "problems": problems, "pasted_plan": _plan(spec)}


async def _page(draft: ExperimentDraft, text: str | None = None) -> dict[str, Any]:
    """The whole page: the form, and the pasted spec (by default, the form's as YAML)."""
    if text is None:
        text = yaml.safe_dump(draft.spec()[0], sort_keys=False, allow_unicode=True)
    return await _form(draft) | await _pasted(text)


@router.get("/experiments/new", name="new_experiment")
async def new_experiment(
    request: Request,
    rt: RuntimeDep,
    preset: Annotated[str, Query(pattern="^[a-z0-9-]+$")] = DEFAULT_PRESET,
    run: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="a run whose spec is the base")] = None,
) -> Response:
    if run is not None:
        base = Draft.of_spec((await services.get_run(rt, run)).spec)
    else:
        base = run_form.preset(preset if preset in PRESETS else DEFAULT_PRESET)
    context = await _page(ExperimentDraft.of_base(base))
    return templates.TemplateResponse(request, "new_experiment.html", context)


@router.post("/experiments/new/form", name="new_experiment_form", dependencies=[Depends(verify_csrf)])
async def form(request: Request) -> Response:
    """The form again, with a row added (`add`) or another scenario's parameters."""
    data = await request.form()
    draft = ExperimentDraft.of_form(data)
    if data.get("add") == "factor":
        draft.factors.append(("", "", ""))
    else:
        draft.base.add(data.get("add"))
    context = run_form.context(draft.base, {}, experiment=draft)
    return templates.TemplateResponse(request, "new_experiment_form.html", context)


@router.post("/experiments/new/check", name="new_experiment_check", dependencies=[Depends(verify_csrf)])
async def check(request: Request) -> Response:
    """What the form makes, and every field's error, in place (out of band)."""
    context = await _form(ExperimentDraft.of_form(await request.form()), oob=True)
    return templates.TemplateResponse(request, "new_experiment_plan.html", context)


@router.post("/experiments/new/spec", name="new_experiment_spec", dependencies=[Depends(verify_csrf)])
async def check_pasted(request: Request, spec: SpecText = "") -> Response:
    """What the pasted spec makes, or its problems (its line, as it is typed)."""
    return templates.TemplateResponse(request, "new_experiment_spec.html", await _pasted(spec))


@router.post("/experiments/new", name="new_experiment_submit", dependencies=[Depends(verify_csrf)])
async def create(request: Request, rt: RuntimeDep) -> Response:
    """Queue every run of the experiment the form, or the pasted spec (`spec`), describes."""
    data = await request.form()
    text = data.get("spec")
    pasted = isinstance(text, str)
    draft = (
        ExperimentDraft.of_base(run_form.preset(DEFAULT_PRESET)) if pasted else ExperimentDraft.of_form(data)
    )
    context = await _page(draft, text if isinstance(text, str) else None)
    spec = context["pasted_spec" if pasted else "spec"]
    if spec is not None:
        try:
            experiment, _ = await services.submit_experiment(rt, spec)
        except SpecError as e:  # a model not allowed, or runs too big for the cluster
            if pasted:
                context |= {"problems": e.by_field(), "pasted_plan": None}
            else:
                context |= {"errors": run_form.place(e.by_field(), draft.base), "plan": None}
        else:
            target = str(request.url_for("experiment", experiment_id=experiment.id))
            if request.headers.get("HX-Request") == "true":
                return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"HX-Location": target})
            return Response(status_code=status.HTTP_303_SEE_OTHER, headers={"Location": target})
    return templates.TemplateResponse(
        request, "new_experiment.html", context, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
    )
