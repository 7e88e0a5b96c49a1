"""The run form both new-run and new-experiment pages show: presets, the scenario's parameters,
the population editor (categories and percentages per attribute, the mix of agent kinds), models
and budget, read back as a `Draft` and checked, each problem placed beside the field it concerns."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from starlette.datastructures import FormData

from agents.kinds import KINDS
from agents.scenarios import SCENARIOS
from agents.spec import RunSpec, SpecError, read_yaml, yaml_problem

__all__ = [
    "DEFAULT_PRESET",
    "GENERAL",
    "PERSONAS",
    "PRESETS",
    "Draft",
    "budget_of",
    "check",
    "context",
    "entry",
    "numeric",
    "place",
    "preset",
    "put",
    "refused",
    "rows",
    "yaml_of",
]

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
                    # Unset (None) parameters are left out: the kind's defaults.
                    ", ".join(f"{p}={_text(v)}" for p, v in k.get("params", {}).items() if v is not None),
                    k.get("label") or "",
                )
                for k in population["kinds"]
            ],
        )

    @classmethod
    def of_form(cls, form: FormData) -> Draft:
        def get(key: str, default: str = "") -> str:
            return entry(form, key, default)

        scenario = get("scenario", "guess_two_thirds")
        params = {}
        for field, schema in fields(scenario).items():
            if schema.get("type") == "boolean":
                params[field] = "true" if get(f"param.{field}") else "false"
            elif value := get(f"param.{field}"):
                params[field] = value
        attributes = [(get(f"attr.{i}.name"), get(f"attr.{i}.shares")) for i in rows(form, "attr", "name")]
        kinds = [
            (get(f"kind.{i}.kind"), get(f"kind.{i}.share"), get(f"kind.{i}.params"), get(f"kind.{i}.label"))
            for i in rows(form, "kind", "kind")
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

    def add(self, table: object) -> None:
        """A row more in the form's table `table` names ("Add attribute", "Add kind")."""
        if table == "attribute":
            self.attributes.append(("", ""))
        elif table == "kind":
            self.kinds.append(("level_k", "", "", ""))

    def spec(self) -> tuple[dict[str, Any], dict[str, str]]:
        """The spec data this draft describes, and what could not even be read, by field."""
        problems: dict[str, str] = {}
        spec: dict[str, Any] = {
            "name": self.name,
            "scenario": {"name": self.scenario, "params": {k: _value(v) for k, v in self.params.items()}},
            "rounds": numeric(self.rounds, "rounds", problems),
            "seed": numeric(self.seed or "0", "seed", problems),
            "record": self.record,
            "population": {"total": numeric(self.total, "population.total", problems), "kinds": []},
        }
        if self.record == "sample":
            spec["record"] = {"sample": numeric(self.sample, "record.sample", problems)}
        if self.hosts:
            spec["placement"] = {"hosts": numeric(self.hosts, "placement.hosts", problems)}
        if self.checkpoint_every:
            spec["checkpoint_every"] = numeric(self.checkpoint_every, "checkpoint_every", problems)
        if self.background:
            spec["population"]["background"] = self.background
        if self.persona:
            spec["population"]["persona"] = {"model": self.persona}
        if self.llm:
            spec["llm"] = yaml_of(self.llm, "llm", problems)
        if budget := budget_of(self.budget_tokens, self.budget_cost, problems):
            spec["budget"] = budget
        attributes = spec["population"]["attributes"] = {}
        for i, (attr, shares) in enumerate(self.attributes):
            attributes[attr] = _pairs(shares, f"population.attributes.{i}", problems, number=True)
        for i, (kind, share, params, label) in enumerate(self.kinds):
            part = {
                "kind": kind,
                "share": numeric(share, f"population.kinds.{i}.share", problems, float),
                "params": _pairs(params, f"population.kinds.{i}.params", problems, number=False),
            }
            if label:
                part["label"] = label
            spec["population"]["kinds"].append(part)
        return spec, problems

    def slots(self) -> list[str]:
        """Every place the form shows an error."""
        fixed = ["name", "rounds", "seed", "placement.hosts", "record", "record.sample", "checkpoint_every"]
        fixed += ["scenario", *(f"scenario.params.{field}" for field in fields(self.scenario))]
        fixed += ["population.total", "population.background", "population.attributes", "population.kinds"]
        fixed += ["population.persona", "llm", "budget", "budget.tokens", PERSONAS]
        rows = [f"population.attributes.{i}" for i in range(len(self.attributes))]
        rows += [f"population.kinds.{i}" for i in range(len(self.kinds))]
        return [GENERAL, *fixed, *rows]


def entry(form: FormData, key: str, default: str = "") -> str:
    """A field of the form as typed, without the spaces around it."""
    value = form.get(key, default)
    return value.strip() if isinstance(value, str) else default


def rows(form: FormData, table: str, column: str) -> list[int]:
    """The rows of one of the form's tables, by the fields `table.N.column` it sent."""
    name = re.compile(rf"{table}\.(\d+)\.{column}")
    return sorted({int(m[1]) for key in form if (m := name.fullmatch(key))})


def _text(value: Any) -> str:
    """A parameter as the form shows it: nested values (lists, mappings) as JSON, which `_value`
    reads back as YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def _value(text: str) -> Any:
    """A typed value from text ("2" is 2, "true" is True), as YAML reads it; text otherwise."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, bool | int | float | str | list | dict) else text


def numeric(text: str, field: str, problems: dict[str, str], kind: type = int) -> Any:
    try:
        return kind(text.replace(",", "").replace("_", ""))
    except ValueError:
        problems[field] = f"“{text}” is not a number" if text else "required"
        return None


def budget_of(tokens: str, cost: str, problems: dict[str, str]) -> dict[str, Any]:
    """A budget's fields as the spec has them: `tokens` and `cost`, those given."""
    budget = {}
    if tokens:
        budget["tokens"] = numeric(tokens, "budget.tokens", problems)
    if cost:
        budget["cost"] = numeric(cost, "budget.cost", problems, float)
    return budget


def yaml_of(text: str, field: str, problems: dict[str, str]) -> Any:
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
    for part in filter(None, (p.strip() for p in _top_level(text))):
        key, sep, value = part.rpartition("=")
        if not sep or not key.strip():
            problems[field] = f"“{part}” is not NAME=VALUE"
            continue
        pairs[key.strip()] = (
            numeric(value.strip(), field, problems, float) if number else _value(value.strip())
        )
    return pairs


def _top_level(text: str) -> list[str]:
    """`text` split at the commas outside brackets (`a=1, b={"x": [1, 2]}`); inside brackets,
    double-quoted strings are skipped whole. Apostrophes are text (`bachelor's degree=35`)."""
    parts, depth, quoted, start = [], 0, False, 0
    for at, char in enumerate(text):
        if quoted:
            quoted = char != '"'
        elif depth and char == '"':
            quoted = True
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth = max(0, depth - 1)
        elif char == "," and not depth:
            parts.append(text[start:at])
            start = at + 1
    return [*parts, text[start:]]


def fields(scenario: str) -> dict[str, dict[str, Any]]:
    """The scenario's parameters and their JSON schemas (none for an unknown scenario)."""
    if scenario not in SCENARIOS.names():
        return {}
    return SCENARIOS.get(scenario).Params.model_json_schema()["properties"]


def place(problems: Iterable[tuple[str, str]], draft: Draft) -> dict[str, list[str]]:
    """Each problem (path, message) of the run spec beside the field of the form it concerns."""
    placed: dict[str, list[str]] = {}
    slots = draft.slots()
    for where, what in problems:
        if (mine := _at_field(where, what, draft)) is not None:
            put(placed, slots, *mine)
    return placed


def put(placed: dict[str, list[str]], slots: list[str], path: str, message: str) -> None:
    """A problem at `path` under the most specific of the form's `slots` it falls in: beside its
    field, at the top only when it names none."""
    slot = max((s for s in slots if path == s or path.startswith(f"{s}.")), key=len, default=GENERAL)
    placed.setdefault(slot, []).append(message if slot == path else f"{path}: {message}")


def _at_field(path: str, message: str, draft: Draft) -> tuple[str, str] | None:
    """A problem at the field of the form it is about: a scenario's parameter ("scenario",
    "ratio: ...") at that parameter, a sample of agents to record at its size (pydantic names
    each choice of `record`; None for the choice the form did not make)."""
    found = re.fullmatch(r"(\w+): (?:Value error, )?(.+)", message, re.S) if path == "scenario" else None
    if found and found[1] in fields(draft.scenario):
        return f"scenario.params.{found[1]}", found[2]
    if path.startswith("record."):
        if "literal[" in path and draft.record == "sample":
            return None
        path = path.replace(".RecordSample", "")
    return path, message


def refused(error: SpecError, draft: Draft) -> dict[str, list[str]]:
    return place(error.by_field(), draft)


def check(draft: Draft) -> tuple[RunSpec | None, dict[str, list[str]]]:
    data, unreadable = draft.spec()
    if unreadable:
        return None, place(unreadable.items(), draft)
    try:
        return RunSpec.parse(data), {}
    except SpecError as e:
        return None, refused(e, draft)


def context(draft: Draft, errors: dict[str, list[str]], **extra: Any) -> dict[str, Any]:
    return {
        "draft": draft,
        "errors": errors,
        "presets": {key: title for key, (title, _, _) in PRESETS.items()},
        "scenarios": SCENARIOS.names(),
        "fields": fields(draft.scenario),
        "kinds": {name: (KINDS.get(name).__doc__ or "").strip().split("\n")[0] for name in KINDS.names()},
        "learning": {name: learns for name in KINDS.names() if (learns := KINDS.get(name).learns)},
        **extra,
    }


def preset(key: str) -> Draft:
    _, example, changes = PRESETS[key]
    data = yaml.safe_load((EXAMPLES / example).read_text(encoding="utf-8"))
    if "name" in changes:
        data["name"] = changes["name"]
    if "total" in changes:
        data["population"]["total"] = changes["total"]
    return Draft.of_spec(data)
