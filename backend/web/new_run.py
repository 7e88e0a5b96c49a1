"""The new-run form: presets, the scenario's parameters, the population editor (categories and
percentages per attribute, the mix of agent kinds), a live preview of the profiles it makes, and
errors shown beside the fields they concern."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Depends, Query, Request, status
from starlette.datastructures import FormData
from starlette.responses import Response

from agents.kinds import KINDS
from agents.population import category_counts
from agents.scenarios import SCENARIOS
from agents.spec import RunSpec, SpecError, read_yaml, yaml_problem
from backend import services
from backend.deps import RuntimeDep
from backend.web.auth import require_login
from backend.web.csrf import verify_csrf
from backend.web.render import templates

__all__ = ["router"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
# Each preset: a title, an example spec, and what to change in it.
PRESETS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "paper-1k": (
        "The paper's game, 1,000 agents",
        "guess-10k.yaml",
        {"name": "guess-two-thirds-1k", "total": 1_000},
    ),
    "paper-10k": ("The paper's game, 10,000 agents", "guess-10k.yaml", {}),
    "paper-100k": (
        "The paper's game, 100,000 agents",
        "guess-10k.yaml",
        {"name": "guess-two-thirds-100k", "total": 100_000},
    ),
    "probe": ("Efficiency probe, 100,000 agents waiting 1 s", "probe-100k.yaml", {}),
}
DEFAULT_PRESET = "paper-10k"
GENERAL = "spec"  # where a problem that names no field of the form is shown
PERSONAS = "personas"  # beside the button that writes sample backgrounds
NO_MODEL = "choose a model first: name it under “Backgrounds written by” and describe it in Models (YAML)"
PERSONAS_PREVIEWED = 3


@dataclasses.dataclass
class Draft:
    """The form as the person filled it in: text, so that a bad value comes back as they typed it."""

    name: str = "run"
    rounds: str = "5"
    seed: str = "0"
    hosts: str = ""
    record: str = "all"
    sample: str = ""
    checkpoint_every: str = ""
    scenario: str = "guess_two_thirds"
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    total: str = "1000"
    background: str = ""
    persona: str = ""  # the model that writes backgrounds; empty: the template
    llm: str = ""  # the spec's llm section, as YAML
    budget_tokens: str = ""
    budget_cost: str = ""
    attributes: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    kinds: list[tuple[str, str, str, str]] = dataclasses.field(default_factory=list)

    @classmethod
    def of_spec(cls, spec: dict[str, Any]) -> Draft:
        population = spec["population"]
        record = spec.get("record", "all")
        return cls(
            name=str(spec.get("name", "run")),
            rounds=str(spec["rounds"]),
            seed=str(spec.get("seed", 0)),
            hosts=str(spec.get("placement", {}).get("hosts") or ""),
            record="sample" if isinstance(record, dict) else record,
            sample=str(record["sample"]) if isinstance(record, dict) else "",
            checkpoint_every=str(spec.get("checkpoint_every") or ""),
            scenario=spec["scenario"]["name"],
            params={k: _text(v) for k, v in spec["scenario"].get("params", {}).items()},
            total=str(population["total"]),
            background=population.get("background") or "",
            persona=(population.get("persona") or {}).get("model", ""),
            llm=yaml.safe_dump(spec["llm"], sort_keys=False) if spec.get("llm") else "",
            budget_tokens=str((spec.get("budget") or {}).get("tokens") or ""),
            budget_cost=str((spec.get("budget") or {}).get("cost") or ""),
            attributes=[
                (attr, ", ".join(f"{c}={p:g}" for c, p in shares.items()))
                for attr, shares in population.get("attributes", {}).items()
            ],
            kinds=[
                (
                    k["kind"],
                    f"{k['share']:g}",
                    ", ".join(f"{p}={_text(v)}" for p, v in k.get("params", {}).items()),
                    k.get("label") or "",
                )
                for k in population["kinds"]
            ],
        )

    @classmethod
    def of_form(cls, form: FormData) -> Draft:
        def get(key: str, default: str = "") -> str:
            value = form.get(key, default)
            return value.strip() if isinstance(value, str) else default

        scenario = get("scenario", "guess_two_thirds")
        params = {}
        for field, schema in _fields(scenario).items():
            if schema.get("type") == "boolean":
                params[field] = "true" if get(f"param.{field}") else "false"
            elif value := get(f"param.{field}"):
                params[field] = value
        rows = sorted({int(m[1]) for key in form for m in [re.fullmatch(r"attr\.(\d+)\.name", key)] if m})
        attributes = [(get(f"attr.{i}.name"), get(f"attr.{i}.shares")) for i in rows]
        rows = sorted({int(m[1]) for key in form for m in [re.fullmatch(r"kind\.(\d+)\.kind", key)] if m})
        kinds = [
            (get(f"kind.{i}.kind"), get(f"kind.{i}.share"), get(f"kind.{i}.params"), get(f"kind.{i}.label"))
            for i in rows
        ]
        return cls(
            name=get("name", "run"),
            rounds=get("rounds"),
            seed=get("seed"),
            hosts=get("hosts"),
            record=get("record", "all"),
            sample=get("sample"),
            checkpoint_every=get("checkpoint_every"),
            scenario=scenario,
            params=params,
            total=get("total"),
            background=get("background"),
            persona=get("persona"),
            llm=get("llm"),
            budget_tokens=get("budget_tokens"),
            budget_cost=get("budget_cost"),
            # A row cleared of its name (attribute) or share (kind) is removed.
            attributes=[(a, s) for a, s in attributes if a],
            kinds=[k for k in kinds if k[1]],
        )

    def spec(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The spec data this draft describes, and what could not even be read, by field."""
        problems: dict[str, str] = {}
        spec: dict[str, Any] = {
            "name": self.name,
            "scenario": {"name": self.scenario, "params": {k: _value(v) for k, v in self.params.items()}},
            "rounds": _number(self.rounds, "rounds", problems),
            "seed": _number(self.seed or "0", "seed", problems),
            "record": self.record,
            "population": {"total": _number(self.total, "population.total", problems), "kinds": []},
        }
        if self.record == "sample":
            spec["record"] = {"sample": _number(self.sample, "record.sample", problems)}
        if self.hosts:
            spec["placement"] = {"hosts": _number(self.hosts, "placement.hosts", problems)}
        if self.checkpoint_every:
            spec["checkpoint_every"] = _number(self.checkpoint_every, "checkpoint_every", problems)
        if self.background:
            spec["population"]["background"] = self.background
        if self.persona:
            spec["population"]["persona"] = {"model": self.persona}
        if self.llm:
            spec["llm"] = _yaml(self.llm, "llm", problems)
        budget = {}
        if self.budget_tokens:
            budget["tokens"] = _number(self.budget_tokens, "budget.tokens", problems)
        if self.budget_cost:
            budget["cost"] = _number(self.budget_cost, "budget.cost", problems, float)
        if budget:
            spec["budget"] = budget
        attributes = spec["population"]["attributes"] = {}
        for i, (attr, shares) in enumerate(self.attributes):
            attributes[attr] = _pairs(shares, f"population.attributes.{i}", problems, number=True)
        for i, (kind, share, params, label) in enumerate(self.kinds):
            part = {
                "kind": kind,
                "share": _number(share, f"population.kinds.{i}.share", problems, float),
                "params": _pairs(params, f"population.kinds.{i}.params", problems, number=False),
            }
            if label:
                part["label"] = label
            spec["population"]["kinds"].append(part)
        return spec, problems

    def slots(self) -> list[str]:
        """Every place the form shows an error."""
        fixed = ["name", "rounds", "seed", "placement.hosts", "record", "record.sample", "checkpoint_every"]
        fixed += ["scenario", *(f"scenario.params.{field}" for field in _fields(self.scenario))]
        fixed += ["population.total", "population.background", "population.attributes", "population.kinds"]
        fixed += ["population.persona", "llm", "budget", "budget.tokens", PERSONAS]
        rows = [f"population.attributes.{i}" for i in range(len(self.attributes))]
        rows += [f"population.kinds.{i}" for i in range(len(self.kinds))]
        return [GENERAL, *fixed, *rows]


def _text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _value(text: str) -> Any:
    """A typed value from text ("2" is 2, "true" is True), as YAML reads it; text otherwise."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, bool | int | float | str) else text


def _number(text: str, field: str, problems: dict[str, str], kind: type = int) -> Any:
    try:
        return kind(text.replace(",", "").replace("_", ""))
    except ValueError:
        problems[field] = f"“{text}” is not a number" if text else "required"
        return None


def _yaml(text: str, field: str, problems: dict[str, str]) -> Any:
    try:
        return read_yaml(text)
    except yaml.YAMLError as e:
        problems[field] = f"not valid YAML: {yaml_problem(e)}"
    except RecursionError:
        problems[field] = "nested too deeply"
    return None


def _pairs(text: str, field: str, problems: dict[str, str], *, number: bool) -> dict[str, Any]:
    """`a=1, b=2` as {"a": 1, "b": 2}: percentages of categories, or a kind's parameters."""
    pairs: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.rpartition("=")
        if not sep or not key.strip():
            problems[field] = f"“{part}” is not NAME=VALUE"
            continue
        pairs[key.strip()] = (
            _number(value.strip(), field, problems, float) if number else _value(value.strip())
        )
    return pairs


def _fields(scenario: str) -> dict[str, dict[str, Any]]:
    """The scenario's parameters and their JSON schemas (none for an unknown scenario)."""
    if scenario not in SCENARIOS.names():
        return {}
    return SCENARIOS.get(scenario).Params.model_json_schema()["properties"]


def _place(problems: Iterable[tuple[str, str]], draft: Draft) -> dict[str, list[str]]:
    """Each problem (path, message) under the most specific slot of the form it falls in: beside
    its field, at the top only when it names none."""
    slots = sorted(draft.slots(), key=len, reverse=True)
    placed: dict[str, list[str]] = {}
    for where, what in problems:
        if (mine := _at_field(where, what, draft)) is None:
            continue
        path, message = mine
        slot = next((s for s in slots if path == s or path.startswith(f"{s}.")), GENERAL)
        placed.setdefault(slot, []).append(message if slot == path else f"{path}: {message}")
    return placed


def _at_field(path: str, message: str, draft: Draft) -> tuple[str, str] | None:
    """A problem at the field of the form it is about: a scenario's parameter ("scenario",
    "ratio: ...") at that parameter, a sample of agents to record at its size (pydantic names
    each choice of `record`; None for the choice the form did not make)."""
    found = re.fullmatch(r"(\w+): (?:Value error, )?(.+)", message, re.S) if path == "scenario" else None
    if found and found[1] in _fields(draft.scenario):
        return f"scenario.params.{found[1]}", found[2]
    if path.startswith("record."):
        if "literal[" in path and draft.record == "sample":
            return None
        path = path.replace(".RecordSample", "")
    return path, message


def _refused(error: SpecError, draft: Draft) -> dict[str, list[str]]:
    return _place(error.by_field(), draft)


def _check(draft: Draft) -> tuple[RunSpec | None, dict[str, list[str]]]:
    data, unreadable = draft.spec()
    if unreadable:
        return None, _place(unreadable.items(), draft)
    try:
        return RunSpec.parse(data), {}
    except SpecError as e:
        return None, _refused(e, draft)


def _context(draft: Draft, errors: dict[str, list[str]], **extra: Any) -> dict[str, Any]:
    return {
        "draft": draft,
        "errors": errors,
        "presets": {key: title for key, (title, _, _) in PRESETS.items()},
        "scenarios": SCENARIOS.names(),
        "fields": _fields(draft.scenario),
        "kinds": {name: (KINDS.get(name).__doc__ or "").strip().split("\n")[0] for name in KINDS.names()},
        "learning": {name: learns for name in KINDS.names() if (learns := KINDS.get(name).learns)},
        **extra,
    }


def _preset(key: str) -> Draft:
    _, example, changes = PRESETS[key]
    data = yaml.safe_load((EXAMPLES / example).read_text(encoding="utf-8"))
    if "name" in changes:
        data["name"] = changes["name"]
    if "total" in changes:
        data["population"]["total"] = changes["total"]
    return Draft.of_spec(data)


@router.get("/runs/new", name="new_run")
async def new_run_page(
    request: Request, preset: Annotated[str, Query(pattern="^[a-z0-9-]+$")] = DEFAULT_PRESET
) -> Response:
    draft = _preset(preset if preset in PRESETS else DEFAULT_PRESET)
    spec, errors = _check(draft)
    context = _context(draft, errors, preview=await _preview(spec))
    return templates.TemplateResponse(request, "new_run.html", context)


@router.post("/runs/new/form", name="new_run_form", dependencies=[Depends(verify_csrf)])
async def new_run_form(request: Request) -> Response:
    """The form again, with a row added (`add`) or another scenario's parameters."""
    form = await request.form()
    draft = Draft.of_form(form)
    if form.get("add") == "attribute":
        draft.attributes.append(("", ""))
    elif form.get("add") == "kind":
        draft.kinds.append(("level_k", "", "", ""))
    return templates.TemplateResponse(request, "new_run_form.html", _context(draft, {}))


@router.post("/runs/new/preview", name="new_run_preview", dependencies=[Depends(verify_csrf)])
async def new_run_preview(request: Request) -> Response:
    """A few of the profiles the form would make, and every field's error, in place (out of band)."""
    draft = Draft.of_form(await request.form())
    spec, errors = _check(draft)
    context = _context(draft, errors, preview=await _preview(spec), oob=True)
    return templates.TemplateResponse(request, "new_run_preview.html", context)


@router.post("/runs/new/personas", name="new_run_personas", dependencies=[Depends(verify_csrf)])
async def new_run_personas(request: Request, rt: RuntimeDep) -> Response:
    """A few personas written by the form's model for its first profiles, before any run."""
    draft = Draft.of_form(await request.form())
    spec, errors = _check(draft)
    context = _context(draft, errors, preview=await _preview(spec), oob=True)
    if spec is not None and spec.population.persona is None:
        context["errors"] = {PERSONAS: [NO_MODEL]}
    elif spec is not None and spec.population.persona is not None:
        profiles = context["preview"]["profiles"][:PERSONAS_PREVIEWED]
        try:
            personas = await services.preview_personas(rt, spec, profiles)
        except SpecError as e:
            context["errors"] = _refused(e, draft)
        else:
            context["personas"] = list(zip(profiles, personas, strict=True))
    return templates.TemplateResponse(request, "new_run_preview.html", context)


@router.post("/runs/new", name="new_run_submit", dependencies=[Depends(verify_csrf)])
async def create_run(request: Request, rt: RuntimeDep) -> Response:
    draft = Draft.of_form(await request.form())
    spec, errors = _check(draft)
    if spec is None:
        context = _context(draft, errors, preview=None)
        return templates.TemplateResponse(
            request, "new_run.html", context, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT
        )
    try:
        run = await services.submit(rt, spec)
    except SpecError as e:  # not allowed or too big for the cluster
        context = _context(draft, _refused(e, draft), preview=await _preview(spec))
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
