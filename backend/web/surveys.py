"""Dashboard pages of a run's surveys: the form that puts questions to its agents (a list of
question slots, a sample), and a survey's page, live while answers arrive: a chart per question,
broken down by a kind or an attribute, and the answers to download."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import FileResponse
from starlette.datastructures import FormData
from starlette.responses import Response

from agents.spec import MAX_NAME, RunSpec
from agents.survey import MAX_QUESTIONS, SurveySpec, SurveySpecError
from backend import services
from backend.deps import RunId, RuntimeDep, SurveyDownload, SurveyId
from backend.domain import IllegalTransition
from backend.web.auth import require_login
from backend.web.csrf import verify_csrf
from backend.web.render import page_or_fragment, templates

__all__ = ["router"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])

SLOTS = 3  # question slots a new form shows; `?questions=N` shows more
GENERAL = "survey"  # where a problem that names no field of the form is shown
FIELDS = ("text", "type", "min", "max", "options")  # of a question slot, named q{i}_{field}


@dataclasses.dataclass
class Draft:
    """The form as the person filled it in (text, so a bad value comes back as typed)."""

    name: str = ""
    questions: list[dict[str, str]] = dataclasses.field(default_factory=list)
    sample: str = "all"
    random: str = "100"
    where: dict[str, str] = dataclasses.field(default_factory=dict)
    kinds: list[str] = dataclasses.field(default_factory=list)

    @classmethod
    def of_form(cls, form: FormData, slots: int) -> Draft:
        text = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        questions = [
            {f: text.get(f"q{i}_{f}", "") for f in ("text", "type", "min", "max", "options")}
            for i in range(slots)
        ]
        where = {k.removeprefix("where_"): v for k, v in text.items() if k.startswith("where_") and v}
        kinds = [v for k, v in form.multi_items() if k == "kinds" and isinstance(v, str)]
        return cls(
            text.get("name", ""), questions, text.get("sample", "all"), text.get("random", ""), where, kinds
        )

    def data(self) -> tuple[dict[str, Any], list[int]]:
        """The survey as data for `SurveySpec`, and which slot each of its questions came from
        (slots left empty are no question)."""
        used = [i for i, q in enumerate(self.questions) if q["text"].strip()]
        questions = []
        for i in used:
            q = self.questions[i]
            question: dict[str, Any] = {"text": q["text"].strip(), "type": q["type"] or "text"}
            if question["type"] == "number":
                question |= {"min": _number(q["min"]), "max": _number(q["max"])}
            if question["type"] == "choice":
                question["options"] = [line.strip() for line in q["options"].splitlines() if line.strip()]
            questions.append(question)
        sample: dict[str, Any] = {"all": True}
        if self.sample == "random":
            sample = {"random": _number(self.random, whole=True)}
        elif self.sample == "filter":
            sample = {k: v for k, v in (("where", self.where), ("kinds", self.kinds)) if v}
        return {"name": self.name.strip(), "questions": questions, "sample": sample}, used


def _number(typed: str, whole: bool = False) -> Any:
    """What was typed as a number, or as typed (the spec then says it is not one), or None."""
    typed = typed.strip().replace(",", "")
    if not typed:
        return None
    try:
        return int(typed) if whole else float(typed)
    except ValueError:
        return typed


def _errors(problems: SurveySpecError, used: list[int]) -> dict[str, str]:
    """Each problem by the form field it concerns: `q2.max`, `sample.random`, or `survey`."""
    errors: dict[str, str] = {}
    for where, message in problems.by_field():
        parts = where.split(".")
        if parts[0] == "questions" and len(parts) > 1 and parts[1].isdigit():
            field = f"q{used[int(parts[1])]}.{parts[2] if len(parts) > 2 else 'text'}"
        elif parts[0] == "questions":
            field = "q0.text"  # none given
        elif parts[0] == "sample":
            field = "sample.random" if parts[1:2] == ["random"] else "sample"
        else:
            field = parts[0] if parts[0] == "name" else GENERAL
        errors[field] = f"{errors[field]}; {message}" if field in errors else message
    return errors


async def _form(
    request: Request, rt: RuntimeDep, run_id: int, draft: Draft, errors: dict[str, str], code: int = 200
) -> Response:
    run = await services.get_run(rt, run_id)
    population = RunSpec.stored(run.spec).population
    context = {
        "run": run,
        "draft": draft,
        "errors": errors,
        "attributes": population.attributes,
        "kinds": [k.label for k in population.kinds],
        "surveys": await services.list_surveys(rt, run_id),
        "max_questions": MAX_QUESTIONS,
    }
    return templates.TemplateResponse(request, "survey_new.html", context, status_code=code)


def _slots(form: FormData) -> int:
    """How many question slots the form sent."""
    return min(sum(1 for k in form if k.startswith("q") and k.endswith("_text")), MAX_QUESTIONS)


@router.get("/runs/{run_id}/surveys/new", name="new_survey")
async def new_survey(
    request: Request,
    rt: RuntimeDep,
    run_id: RunId,
    questions: Annotated[int, Query(ge=1, le=MAX_QUESTIONS)] = SLOTS,
) -> Response:
    slots = [dict.fromkeys(FIELDS, "") for _ in range(questions)]
    return await _form(request, rt, run_id, Draft(questions=slots), {})


@router.post("/runs/{run_id}/surveys/new", name="survey_create", dependencies=[Depends(verify_csrf)])
async def create_survey(request: Request, rt: RuntimeDep, run_id: RunId) -> Response:
    form = await request.form()
    draft = Draft.of_form(form, _slots(form))
    data, used = draft.data()
    try:
        survey = await services.create_survey(rt, run_id, SurveySpec.parse(data))
    except SurveySpecError as e:
        return await _form(
            request, rt, run_id, draft, _errors(e, used), status.HTTP_422_UNPROCESSABLE_CONTENT
        )
    except IllegalTransition as e:  # nothing recorded yet, or the budget is spent
        errors = {GENERAL: str(e)}
        return await _form(request, rt, run_id, draft, errors, status.HTTP_409_CONFLICT)
    target = str(request.url_for("survey", run_id=run_id, survey_id=survey.id))
    if request.headers.get("HX-Request") == "true":
        return Response(status_code=status.HTTP_204_NO_CONTENT, headers={"HX-Location": target})
    return Response(status_code=status.HTTP_303_SEE_OTHER, headers={"Location": target})


@router.post("/runs/{run_id}/surveys/new/more", name="survey_more", dependencies=[Depends(verify_csrf)])
async def more_questions(request: Request, rt: RuntimeDep, run_id: RunId) -> Response:
    """The form as filled in so far, with one more question slot."""
    form = await request.form()
    draft = Draft.of_form(form, _slots(form))
    if len(draft.questions) < MAX_QUESTIONS:
        draft.questions.append(dict.fromkeys(FIELDS, ""))
    return await _form(request, rt, run_id, draft, {})


@router.get("/runs/{run_id}/surveys/{survey_id}", name="survey")
async def survey_page(
    request: Request,
    rt: RuntimeDep,
    run_id: RunId,
    survey_id: SurveyId,
    by: Annotated[str, Query(max_length=MAX_NAME)] = "",
) -> Response:
    run = await services.get_run(rt, run_id)
    found = await services.get_survey(rt, run_id, survey_id)
    attributes = RunSpec.stored(run.spec).population.attributes
    chosen = by if by == "kind" or by in attributes else ""
    questions = await services.aggregates(rt, found, chosen or None)
    answered = (await services.answered(rt, [survey_id])).get(survey_id, 0)
    context = {
        "run": run,
        "survey": found,
        "spec": SurveySpec.model_validate(found.spec),
        "answered": answered,
        "expected": found.agents * len(questions),
        "active": found.status in ("queued", "running"),
        "questions": [q | {"chart": _chart(q)} for q in questions],
        "by": chosen,
        "breakdowns": ["kind", *sorted(attributes)],
        "formats": services.EXPORT_FORMATS,
    }
    return page_or_fragment(request, "survey.html", "survey_live.html", context)


def _chart(question: dict[str, Any]) -> dict[str, Any] | None:
    """What charts.js draws for a question: bars per bin or option, one set per group."""
    if question["type"] == "number":
        labels, counts = question["histogram"]["labels"], (lambda s: s["histogram"]["counts"])
    elif question["type"] == "choice":
        labels, counts = list(question["counts"]), (lambda s: list(s["counts"].values()))
    else:
        return None
    groups = question["groups"] or [question | {"group": "all agents"}]
    x = "answer" if question["type"] == "number" else "option"
    return {
        "labels": labels,
        "x": x,
        "sets": [{"label": str(g["group"]), "counts": counts(g)} for g in groups],
    }


@router.get("/runs/{run_id}/surveys/{survey_id}/export", name="survey_export")
async def export_survey(file: SurveyDownload) -> FileResponse:
    return file
