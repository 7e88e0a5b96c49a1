"""What the REST API returns: one public model per entity, lists in a `{data, count}` envelope."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorOut",
    "FieldError",
    "InjectIn",
    "RoundPublic",
    "RoundsPublic",
    "RunPublic",
    "RunsPublic",
]


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the bad input, e.g. population.total")
    message: str


class ErrorOut(BaseModel):
    """Every error the API returns has this shape."""

    detail: str
    errors: list[FieldError] = Field(default_factory=list)


class RunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: str
    agents: int
    rounds: int
    round: int = Field(description="the last round completed and stored")
    seed: int
    attempts: int
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    spec: dict[str, Any]
    live: dict[str, Any] = Field(default_factory=dict, description="what the run's worker reports now")


class RunsPublic(BaseModel):
    data: list[RunPublic]
    count: int


class RoundPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    round: int
    stats: dict[str, Any]
    details: dict[str, Any]
    time: float
    failures: int


class RoundsPublic(BaseModel):
    data: list[RoundPublic]
    count: int


class InjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = Field(min_length=1, max_length=10_000)
    where: dict[str, str] | None = Field(None, description="only agents with these attribute values")
    public: bool = Field(False, description="add to everyone's public information instead of inboxes")
