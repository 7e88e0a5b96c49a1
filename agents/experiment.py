"""The experiment spec: a base run spec, the factors that vary across its runs, and replicates.

Factors are dotted paths into the run spec (`scenario.params.ratio`, `population.kinds.0.params.k`,
`seed`), each with its values. `vary` factors are crossed as a grid; each `zip` group is one factor
whose paths move together (equal-length lists). Every cell of the grid runs `replicates` times; a
replicate's seed is derived from the experiment's seed (or the cell's, if `seed` is a factor) and
the replicate's number, the same in every cell, so cells are compared on the same random draws and
the whole experiment is reproducible from its spec.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from agents.rng import mix
from agents.spec import Budget, RunSpec, SpecError, read_spec_file

__all__ = [
    "Cell",
    "ExperimentError",
    "ExperimentSpec",
    "Factor",
    "Planned",
    "load_experiment",
    "replicate_seed",
    "shown",
]

MAX_RUNS = 1_000  # cells × replicates
MAX_FACTORS = 10
MAX_LEVELS = 100  # values of one factor
MAX_PARALLEL = 64
MAX_STORED = 50_000_000  # bytes of run specs an experiment stores, all its runs together

Path_ = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^\w+(\.\w+)*$")]
Levels = Annotated[list[Any], Field(min_length=1, max_length=MAX_LEVELS)]


class ExperimentError(SpecError):
    what = "experiment spec"


@dataclass(frozen=True)
class Factor:
    """What varies: one path (`vary`), or several that move together (a `zip` group)."""

    paths: tuple[str, ...]
    levels: tuple[tuple[Any, ...], ...]  # per level, a value for each path
    where: str  # where the factor is in the experiment spec, for errors: "vary.seed", "zip.0"

    @property
    def name(self) -> str:
        return " + ".join(self.paths)


@dataclass(frozen=True)
class Cell:
    """One combination of the factors' levels: `values` maps each varied path to its value."""

    index: int
    values: dict[str, Any]

    def label(self) -> str:
        return ", ".join(f"{_short(path)}={shown(value)}" for path, value in self.values.items()) or "base"


@dataclass(frozen=True)
class Planned:
    """One run of the experiment: its cell, its replicate (from 0) and its spec."""

    cell: Cell
    replicate: int
    spec: RunSpec


def _short(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def shown(value: Any) -> str:
    """A factor's value in a few words: text as it is, a list of kinds by their labels or kinds
    (`level_k×4+adaptive`), anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, dict) and "kind" in v for v in value):
        names = [str(v.get("label") or v["kind"]) for v in value]
        return "+".join(f"{n}×{names.count(n)}" if names.count(n) > 1 else n for n in dict.fromkeys(names))
    return json.dumps(value)


def replicate_seed(seed: int, replicate: int) -> int:
    """The seed of replicate `replicate` (from 0) of a cell whose base seed is `seed`."""
    return mix(mix(seed) ^ (replicate + 1)) >> 1  # below 2**63, as a run's seed must be


class ExperimentSpec(BaseModel):
    """Many runs of one base spec, compared: its factors crossed, each cell replicated."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field("experiment", min_length=1, max_length=200, pattern=r"^[^\n\r]*$")
    base: RunSpec = Field(description="the run spec every run starts from; factors change it")
    vary: dict[Path_, Levels] = Field(
        default_factory=dict, max_length=MAX_FACTORS, description="paths into the run spec, crossed"
    )
    zip: list[Annotated[dict[Path_, Levels], Field(min_length=1)]] = Field(
        default_factory=list,
        max_length=MAX_FACTORS,
        description="groups of paths whose values move together (lists of equal length)",
    )
    replicates: int = Field(1, ge=1, le=100, description="runs of each cell, with derived seeds")
    seed: int = Field(0, ge=0, lt=2**63, description="the seeds of replicates derive from it")
    max_parallel: int = Field(2, ge=1, le=MAX_PARALLEL, description="runs of the experiment at a time")
    budget: Budget | None = Field(
        None, description="language-model use of all its runs together; reached, they all pause"
    )

    @model_validator(mode="after")
    def _factors_fit(self) -> ExperimentSpec:
        paths = [*self.vary, *(p for group in self.zip for p in group)]
        if len(set(paths)) != len(paths):
            raise ValueError("zip: a path is varied twice (in vary and zip, or in two zip groups)")
        if len(self.vary) + len(self.zip) > MAX_FACTORS:
            raise ValueError(f"zip: more than {MAX_FACTORS} factors in vary and zip together")
        for i, group in enumerate(self.zip):
            if len({len(levels) for levels in group.values()}) > 1:
                raise ValueError(f"zip.{i}: its lists must have the same length, to move together")
        for factor in self.factors():
            if len(set(map(json.dumps, factor.levels))) != len(factor.levels):
                raise ValueError(f"{factor.where}: a value is given twice")
        runs = math.prod(len(f.levels) for f in self.factors()) * self.replicates
        if runs > MAX_RUNS:
            raise ValueError(f"replicates: {runs:,} runs in all; an experiment has at most {MAX_RUNS:,}")
        # Every run stores its own spec: bound what one experiment stores (and plans in memory).
        size = len(self.base.model_dump_json()) * runs
        if size > MAX_STORED:
            raise ValueError(
                f"replicates: {runs:,} runs of this base spec store {size / 1e6:,.0f} MB of specs; an "
                f"experiment stores at most {MAX_STORED / 1e6:,.0f} MB (fewer runs, or a smaller base)"
            )
        return self

    def factors(self) -> list[Factor]:
        found = [
            Factor((path,), tuple((v,) for v in levels), f"vary.{path}") for path, levels in self.vary.items()
        ]
        for i, group in enumerate(self.zip):
            found.append(Factor(tuple(group), tuple(zip(*group.values(), strict=True)), f"zip.{i}"))
        return found

    def cells(self) -> list[Cell]:
        factors = self.factors()
        combos = itertools.product(*(f.levels for f in factors))
        return [
            Cell(
                i,
                {
                    p: v
                    for f, level in zip(factors, combo, strict=True)
                    for p, v in zip(f.paths, level, strict=True)
                },
            )
            for i, combo in enumerate(combos)
        ]

    @property
    def runs(self) -> int:
        return len(self.cells()) * self.replicates

    def plan(self) -> list[Planned]:
        """Every run of the experiment, cell by cell, each cell's replicates in order; raises
        `ExperimentError` naming the factor or the base field that makes a run invalid."""
        problems: list[str] = []
        planned = []
        base = self.base.model_dump(mode="json")
        # A kind's label made of its parameters is made again from the parameters a cell sets.
        for kind, data in zip(self.base.population.kinds, base["population"]["kinds"], strict=True):
            if kind.label == kind.default_label():
                del data["label"]
        for cell in self.cells():
            data = copy.deepcopy(base)
            for path, value in cell.values.items():
                if (problem := _put(data, path, value)) is not None:
                    problems.append(f"{self._where(path)}: {problem}")
            if problems:
                break
            base_seed = data.get("seed", self.seed) if "seed" in cell.values else self.seed
            for replicate in range(self.replicates):
                run = data | {
                    "seed": replicate_seed(base_seed, replicate) if isinstance(base_seed, int) else base_seed,
                    "name": f"{self.name} [{cell.label()}] #{replicate + 1}"[:200],
                }
                try:
                    planned.append(Planned(cell, replicate, RunSpec.parse(run)))
                except SpecError as e:
                    problems += [self._blame(where, what, cell) for where, what in e.by_field()]
                    break  # the other replicates differ only by their seed
        if problems:
            raise ExperimentError(list(dict.fromkeys(problems)))
        return planned

    def _where(self, path: str) -> str:
        return next(f.where for f in self.factors() if path in f.paths)

    def _blame(self, where: str, what: str, cell: Cell) -> str:
        """A run's problem at `where` as the experiment's: the factor that set it, or the base.
        A kind's or scenario's parameters are checked together, their problem put at the whole
        (`scenario: ratio: ...`): the parameter it names is the field."""
        if (named := re.match(r"(\w+): (.+)", what, re.S)) and f"{where}.params.{named[1]}" in cell.values:
            where, what = f"{where}.params.{named[1]}", named[2]
        for path, value in cell.values.items():
            if where == path or where.startswith(path + ".") or path.startswith(where + "."):
                return f"{self._where(path)}: {shown(value)}: {what}"
        if where in ("name", "seed"):
            return f"{where}: {what}"
        return f"base.{where}: {what}"

    @classmethod
    def stored(cls, data: Any) -> ExperimentSpec:
        """An experiment's spec as the store holds it (see `RunSpec.stored`)."""
        return cls.model_validate(data, context={"stored": True})

    @classmethod
    def parse(cls, data: Any) -> ExperimentSpec:
        """Validate `data` and every run it plans; raise `ExperimentError` naming each bad field."""
        try:
            spec = cls.model_validate(data)
        except ValidationError as e:
            problems = []
            for err in e.errors():
                where = ".".join(map(str, err["loc"])) or "experiment"
                message = err["msg"].removeprefix("Value error, ")
                # A check across fields names the field it is about: "replicates: 1,100 runs ...".
                if where == "experiment" and (named := re.fullmatch(r"(\w+(?:\.\w+)*): (.+)", message, re.S)):
                    where, message = named.groups()
                problems.append(f"{where}: {message}")
            raise ExperimentError(problems) from None
        spec.plan()
        return spec


def _put(data: Any, path: str, value: Any) -> str | None:
    """Set `path` in `data` to `value`; what is wrong with the path if it cannot be."""
    *parents, last = path.split(".")
    node = data
    for i, key in enumerate([*parents, last]):
        at = ".".join([*parents, last][: i + 1])
        if isinstance(node, list):
            if not key.isdigit() or int(key) >= len(node):
                return f"the base spec's {at.rsplit('.', 1)[0]} has no item {key}"
            if i == len(parents):
                node[int(key)] = value
            else:
                node = node[int(key)]
        elif isinstance(node, dict):
            if i == len(parents):
                node[key] = value
            else:
                node = node.setdefault(key, {})
        else:
            return f"the base spec's {at.rsplit('.', 1)[0]} is a value, not a mapping or a list"
    return None


def load_experiment(path: str | Path) -> ExperimentSpec:
    """Read an experiment spec from a YAML or JSON file. Its `base` may name a run spec file,
    relative to the experiment's folder."""
    path = Path(path)
    data = read_spec_file(path, "experiment spec", ExperimentError)
    if isinstance(data.get("base"), str):
        data["base"] = read_spec_file(path.parent / data["base"], "run spec", ExperimentError)
    return ExperimentSpec.parse(data)
