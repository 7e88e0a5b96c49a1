"""The run spec: everything needed to run a simulation, validated before anything starts."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonDict

from agents.archetypes import check_archetypes
from agents.kinds import KINDS
from agents.llm import LLMSpec
from agents.personas import PersonaSpec
from agents.registry import Registry, UnknownName
from agents.scenarios import SCENARIOS
from agents.templates import MAX_TEMPLATE, check_template

__all__ = [
    "Budget",
    "KindShare",
    "PlacementSpec",
    "PopulationSpec",
    "RecordSample",
    "RunSpec",
    "ScenarioSpec",
    "SpecError",
    "load_spec",
    "located",
    "read_spec_file",
    "read_yaml",
    "yaml_problem",
]

MAX_AGENTS = 100_000_000
MAX_ROUNDS = 1_000_000
MAX_HOSTS = 10_000
MAX_SPEC_BYTES = 1_000_000  # a spec file's size
MAX_NAME = 100  # characters of a name: a scenario, kind, attribute or category
MAX_LABEL = 1_000  # a kind's label, by default made of all its parameters
MAX_PARTS = 100  # attributes, kinds
MAX_CATEGORIES = 1_000  # of one attribute

# Names of things a spec refers to or defines: short, one line.
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME, pattern=r"^[^\n\r]*$")]


class SpecError(ValueError):
    """A spec that cannot run; `problems` holds one line per field, as `path: what is wrong`.
    Other specs (a survey's) say what they are in `what`."""

    what: ClassVar[str] = "run spec"

    def __init__(self, problems: list[str]) -> None:
        super().__init__(f"invalid {self.what}:\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems

    def by_field(self) -> list[tuple[str, str]]:
        """Each problem as (where, what is wrong): for forms and API errors that name the field."""
        return [(where, message) for where, message in (p.split(": ", 1) for p in self.problems)]

    @classmethod
    def from_validation(cls, error: ValidationError) -> SpecError:
        problems = []
        for e in error.errors():
            where = ".".join(str(part) for part in e["loc"]) or "spec"
            where, message = located(where, e["msg"], top="spec")
            problems.append(f"{where}: {message}")
        return cls(problems)


# A check across fields of the whole spec names the field it is about: "placement.hosts: ...".
_PLACED = re.compile(r"([a-z_]+(?:\.\w+)+): (.+)", re.S)
_NAMED = re.compile(r"\w+: ")  # a scenario's check names its parameter: "seeds: ..."


def located(where: str, message: str, *, top: str) -> tuple[str, str]:
    """Where a validation error is (a dotted path) and what it says, from pydantic's. An error of
    the whole spec (at `top`) that names its field is put at that field."""
    message = message.removeprefix("Value error, ")
    if where == top and (placed := _PLACED.fullmatch(message)):
        where, message = placed.groups()
    return where, message


class _Strict(BaseModel):
    # Strict types: "1000" or true is not a number of agents (JSON and YAML have numbers).
    model_config = ConfigDict(extra="forbid", strict=True)


def _check_percentages(what: str, shares: dict[str, float]) -> None:
    total = math.fsum(shares.values())
    if abs(total - 100) > 1e-6:
        raise ValueError(f"{what} percentages add up to {total:g}, not 100")


def _valid_params(registry: Registry[Any], name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check that `name` is registered and validate `params` with its own model; keep them as
    plain data (with defaults filled in)."""
    try:
        cls = registry.get(name)
    except UnknownName as e:
        raise ValueError(str(e)) from None
    try:
        # As JSON, strictly: "2/3" is a ratio and "blue" a choice, but "5" is not a number.
        return cls.Params.model_validate_json(json.dumps(params, default=str), strict=True).model_dump(
            mode="json"
        )
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or registry.family}: {err['msg']}" for err in e.errors()
        )
        raise ValueError(problems) from None


def _one_of(registry: Registry[Any]) -> Any:
    """The registry's names as the schema's enum, read when the schema is made: plugins count."""
    return lambda schema: schema.update(enum=registry.names())


class ScenarioSpec(_Strict):
    name: Name = Field(
        description="a registered scenario, e.g. guess_two_thirds", json_schema_extra=_one_of(SCENARIOS)
    )
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_with_valid_params(self) -> ScenarioSpec:
        self.params = _valid_params(SCENARIOS, self.name, self.params)
        return self


class KindShare(_Strict):
    """One part of the population: a kind of agent, its share in percent and its parameters."""

    kind: Name = Field(
        description="a registered kind of agent, e.g. level_k", json_schema_extra=_one_of(KINDS)
    )
    share: float = Field(gt=0, le=100, description="percentage of the population")
    params: dict[str, Any] = Field(default_factory=dict)
    label: str | None = Field(
        None,
        min_length=1,
        max_length=MAX_LABEL,
        pattern=r"^[^\n\r]*$",
        description="how profiles name this part; default from kind and params",
    )

    @model_validator(mode="after")
    def _known_with_valid_params(self) -> KindShare:
        self.params = _valid_params(KINDS, self.kind, self.params)
        if self.label is None:
            self.label = self.default_label()
        return self

    def default_label(self) -> str:
        """The label made of the kind and its parameters."""
        args = ",".join(f"{k}={v}" for k, v in self.params.items())
        return (f"{self.kind}({args})" if args else self.kind)[:MAX_LABEL]


class PopulationSpec(_Strict):
    """How many agents, what they are like, and which kinds they are.

    `attributes` maps each attribute to its categories and their percentages, e.g.
    `gender: {female: 50, male: 50}`. Every profile gets one category per attribute, with exact
    counts. `background` is an optional template such as "{name} works as a {occupation}."; by
    default the background lists the attributes. With `persona`, a language model writes each
    background from the profile's attributes when the run starts (the template stays the fallback).
    """

    total: int = Field(ge=1, le=MAX_AGENTS)
    attributes: dict[Name, Annotated[dict[Name, float], Field(max_length=MAX_CATEGORIES)]] = Field(
        default_factory=dict, max_length=MAX_PARTS
    )
    kinds: list[KindShare] = Field(min_length=1, max_length=MAX_PARTS)
    background: str | None = Field(None, max_length=MAX_TEMPLATE)
    persona: PersonaSpec | None = Field(None, description="have a language model write each background")

    @field_validator("attributes")
    @classmethod
    def _attributes_add_up(cls, attributes: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for name, shares in attributes.items():
            if not shares:
                raise ValueError(f"attribute {name!r} has no categories")
            if any(not 0 < p <= 100 for p in shares.values()):
                raise ValueError(f"attribute {name!r}: each percentage must be in (0, 100]")
            _check_percentages(f"attribute {name!r}", shares)
        return attributes

    @field_validator("kinds")
    @classmethod
    def _kinds_add_up(cls, kinds: list[KindShare]) -> list[KindShare]:
        labels = [k.label for k in kinds]
        if len(set(labels)) != len(labels):
            raise ValueError("two kinds have the same label; give each a distinct `label`")
        _check_percentages("kind", {k.label or k.kind: k.share for k in kinds})
        return kinds

    @field_validator("background")
    @classmethod
    def _template_names_attributes(cls, background: str | None, info: ValidationInfo) -> str | None:
        if background is not None:  # the attributes come first: they are checked by now
            check_template(background, {"name", "kind", *info.data.get("attributes", {})}, what="background")
        return background


class PlacementSpec(_Strict):
    hosts: int | None = Field(
        None, ge=1, le=MAX_HOSTS, description="AgentHost actors; default: one per CPU of the cluster"
    )
    agent_timeout: float = Field(
        60.0, gt=0, le=86_400, description="seconds an agent may take for one round before it fails"
    )


class RecordSample(_Strict):
    sample: int = Field(
        ge=1, le=MAX_AGENTS, description="record the actions of this many agents, the same each round"
    )


class Budget(_Strict):
    """Limits on the run's language-model use; reaching one pauses the run at the round boundary."""

    tokens: int | None = Field(None, ge=1, description="prompt and completion tokens in all")
    cost: float | None = Field(None, gt=0, description="cost in all, by the models' price tables")


# A small spec as the API's schema shows it (Swagger UI's "try it out", clients, schemathesis).
_EXAMPLE: JsonDict = {
    "name": "guess-two-thirds",
    "scenario": {"name": "guess_two_thirds", "params": {"ratio": "2/3", "max_value": 100}},
    "rounds": 5,
    "seed": 2024,
    "population": {
        "total": 1000,
        "attributes": {"gender": {"female": 50, "male": 50}},
        "kinds": [
            {"kind": "level_k", "share": 60, "params": {"k": 1}},
            {"kind": "adaptive", "share": 30},
            {"kind": "uniform", "share": 10},
        ],
    },
}


class RunSpec(_Strict):
    """A whole simulation: scenario, population, rounds, seed and placement, and the language
    models its agents may call, with a budget."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    name: str = Field("run", min_length=1, max_length=200, pattern=r"^[^\n\r]*$")
    scenario: ScenarioSpec
    population: PopulationSpec
    rounds: int = Field(ge=1, le=MAX_ROUNDS)
    seed: int = Field(0, ge=0, lt=2**63)
    placement: PlacementSpec = Field(default_factory=PlacementSpec)
    record: Literal["all", "none"] | RecordSample = Field(
        "all", description="which agents' actions the workflow service stores each round"
    )
    checkpoint_every: int | None = Field(
        None,
        ge=1,
        le=MAX_ROUNDS,
        description="rounds between checkpoints; default 1, or 10 from 100,000 agents",
    )
    llm: LLMSpec | None = Field(None, description="the models agents may call, by the names they use")
    budget: Budget | None = None

    @property
    def checkpoint_interval(self) -> int:
        if self.checkpoint_every is not None:
            return self.checkpoint_every
        return 1 if self.population.total < 100_000 else 10

    @model_validator(mode="after")
    def _hosts_fit_agents(self) -> RunSpec:
        hosts = self.placement.hosts
        if hosts is not None and hosts > self.population.total:
            raise ValueError(
                f"placement.hosts: {hosts} hosts for {self.population.total} agents; "
                "each host needs at least one agent"
            )
        return self

    @model_validator(mode="after")
    def _scenario_fits_population(self, info: ValidationInfo) -> RunSpec:
        if info.context and info.context.get("stored"):
            return self  # it was checked when submitted, perhaps by an older check
        scenario = SCENARIOS.get(self.scenario.name)
        params = scenario.Params.model_validate(self.scenario.params)
        try:
            scenario.check(params, population=self.population.total)
        except ValueError as e:
            where = "scenario.params." if _NAMED.match(str(e)) else "scenario.params: "
            raise ValueError(f"{where}{e}") from None
        return self

    @model_validator(mode="after")
    def _models_are_defined(self) -> RunSpec:
        known = set(self.llm.models) if self.llm is not None else set()
        wanted = [
            (f"population.kinds.{i}.params.model", k.params.get("model"))
            for i, k in enumerate(self.population.kinds)
        ]
        if self.population.persona is not None:
            wanted.append(("population.persona.model", self.population.persona.model))
        for where, model in wanted:
            if model is not None and model not in known:
                raise ValueError(f"{where}: {model!r} is not among the spec's llm.models {sorted(known)}")
        return self

    @model_validator(mode="after")
    def _archetypes_are_attributes(self) -> RunSpec:
        population = self.population
        for i, k in enumerate(population.kinds):
            if not (archetypes := k.params.get("archetypes")):
                continue
            where = f"population.kinds.{i}.params.archetypes"
            if population.persona is not None:
                raise ValueError(
                    f"{where}: archetypes answer from the attributes they share, not from each "
                    "agent's written persona; drop population.persona or the archetypes"
                )
            try:
                check_archetypes(archetypes, population.attributes)
            except ValueError as e:
                raise ValueError(f"{where}.{e}") from None
        return self

    @classmethod
    def parse(cls, data: Any) -> RunSpec:
        """Validate `data`; raise `SpecError` naming every bad field."""
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise SpecError.from_validation(e) from None

    @classmethod
    def stored(cls, data: Any) -> RunSpec:
        """A run's spec as the store holds it: valid when it was submitted, so the checks across
        fields that only refuse new runs (a scenario's `check`) are not made again; a newer,
        stricter check must not make an old run unreadable."""
        return cls.model_validate(data, context={"stored": True})


class _SpecLoader(yaml.SafeLoader):
    """YAML as a spec needs it: a key given twice is an error, not "the last one wins"; no
    aliases (`*name`), whose copies could grow a 1 MB file into gigabytes of data."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed", self.peek_event().start_mark
            )
        # types-PyYAML says the index is an int, but a mapping passes its key's node.
        return super().compose_node(parent, index)  # type: ignore[arg-type]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml(text: str) -> Any:
    """Data from YAML (or JSON) text, read strictly (see `_SpecLoader`); raises `yaml.YAMLError`
    or `RecursionError` (nested thousands deep)."""
    return yaml.load(text, Loader=_SpecLoader)


def yaml_problem(error: yaml.YAMLError) -> str:
    """What is wrong, and where, in one line."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem:
        mark = error.problem_mark
        return f"{error.problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else error.problem
    return str(error).splitlines()[0]


def load_spec(path: str | Path) -> RunSpec:
    """Read a run spec from a YAML or JSON file."""
    return RunSpec.parse(read_spec_file(path))


def read_spec_file(
    path: str | Path, what: str = "run spec", error: type[SpecError] = SpecError
) -> dict[str, Any]:
    """The fields of a spec (a `what`) in a YAML or JSON file, read strictly; `error` says what
    keeps it from being read."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_SPEC_BYTES:
            raise error([f"{path}: larger than {MAX_SPEC_BYTES:,} bytes; a {what} is far smaller"])
        data = read_yaml(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise error([f"{path}: cannot read ({e.strerror})"]) from None
    except yaml.YAMLError as e:
        raise error([f"{path}: not valid YAML or JSON ({yaml_problem(e)})"]) from None
    except RecursionError:  # the YAML reader recurses once per level of nesting
        raise error([f"{path}: nested too deeply to be a {what}"]) from None
    if not isinstance(data, dict):
        raise error([f"{path}: expected a mapping of spec fields at the top level"])
    return data
