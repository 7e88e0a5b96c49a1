"""What the experiments API takes and returns (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from agents.experiment import ExperimentSpec
from agents.spec import Budget
from backend.api.schemas import UtcDatetime
from backend.domain import RunStatus

__all__ = [
    "Band",
    "CellPublic",
    "CellRun",
    "CellsPublic",
    "ComparisonPublic",
    "EffectLevel",
    "ExperimentPublic",
    "ExperimentResumeIn",
    "ExperimentsPublic",
    "FactorEffects",
    "Series",
]

ExperimentStatus = Literal["queued", "running", "paused", "completed", "stopped", "failed"]


class ExperimentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: ExperimentStatus
    paused: bool = Field(description="its queued runs wait for a resume")
    max_parallel: int
    created_at: UtcDatetime
    runs: dict[RunStatus, int] = Field(description="its runs by status")
    rounds: int = Field(description="rounds done, over all its runs")
    planned: int = Field(description="rounds planned, over all its runs")
    spec: ExperimentSpec | dict[str, JsonValue] = Field(
        description="the spec; as plain data only if stored by an older version and no longer valid"
    )


class ExperimentsPublic(BaseModel):
    data: list[ExperimentPublic]
    count: int


class ExperimentResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    budget: Budget | None = Field(None, description="a new budget for its runs together")


class CellRun(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    replicate: int
    seed: int
    status: RunStatus
    round: int
    rounds: int


class CellPublic(BaseModel):
    index: int
    label: str
    values: dict[str, JsonValue] = Field(description="each varied path's value in this cell")
    runs: list[CellRun]


class CellsPublic(BaseModel):
    data: list[CellPublic]
    count: int


class Band(BaseModel):
    rounds: list[int]
    mean: list[float | None]
    low: list[float | None] = Field(
        description="95 % confidence band across replicates (None: one replicate)"
    )
    high: list[float | None]


class Series(BaseModel):
    key: int = Field(description="the cell (an experiment's runs), or the run (runs compared)")
    label: str
    runs: list[int]
    band: Band
    target: Band | None
    histogram: list[int] | None = Field(description="answers in the latest round, over the replicates")
    final_runs: int


class EffectLevel(BaseModel):
    level: str
    runs: int
    mean: float
    difference: float | None = Field(description="from the reference level's mean (None: the reference)")
    low: float | None
    high: float | None


class FactorEffects(BaseModel):
    factor: str
    levels: list[EffectLevel]


class ComparisonPublic(BaseModel):
    measure: str = Field(description="the statistic compared, e.g. avg")
    series: list[Series]
    effects: list[FactorEffects] | None = Field(
        None, description="each factor's effect on the measure's final value (runs that completed)"
    )
