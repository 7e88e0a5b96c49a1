"""What the REST API returns: one public model per entity, lists in a `{data, count}` envelope."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, StringConstraints

from agents.spec import MAX_NAME, Budget, RunSpec
from backend.domain import RunStatus

__all__ = [
    "ActionPublic",
    "AgentDetail",
    "AgentPublic",
    "AgentsPublic",
    "ClusterPublic",
    "ErrorOut",
    "EventPublic",
    "EventsPublic",
    "FieldError",
    "GroupStats",
    "GroupsPublic",
    "HostPublic",
    "InjectIn",
    "InterviewIn",
    "InterviewOut",
    "MessagePublic",
    "ModelUse",
    "NodePublic",
    "Responses",
    "ResumeIn",
    "RoundPublic",
    "RoundUsage",
    "RoundsPublic",
    "RunPublic",
    "RunsPublic",
    "Spend",
    "UsagePublic",
]


def _utc(moment: datetime) -> datetime:
    # The store keeps UTC; SQLite forgets the offset, so a naive time is UTC too.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_utc)]
Stats = dict[str, float | None]


class FieldError(BaseModel):
    field: str = Field(description="dotted path of the bad input, e.g. population.total")
    message: str


class ErrorOut(BaseModel):
    """Every error the API returns has this shape."""

    detail: str
    errors: list[FieldError] = Field(default_factory=list)


# A route's documented responses beyond its own, by status code, as FastAPI takes them.
Responses = dict[int | str, dict[str, Any]]


class RunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    status: RunStatus
    agents: int
    rounds: int
    round: int = Field(description="the last round completed and stored")
    seed: int
    attempts: int
    error: str | None
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None
    spec: RunSpec | dict[str, JsonValue] = Field(
        description="the run's spec; as plain data only if stored by an older version and no longer valid"
    )
    live: dict[str, JsonValue] = Field(default_factory=dict, description="what the run's worker reports now")
    experiment_id: int | None = Field(None, description="the experiment the run is of, if any")
    cell: int | None = Field(None, description="its cell of the experiment (from 0)")
    replicate: int | None = Field(None, description="its replicate in the cell (from 0)")


class RunsPublic(BaseModel):
    data: list[RunPublic]
    count: int


class RoundPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    round: int
    stats: Stats = Field(description="the scenario's headline numbers, e.g. avg, med, win")
    details: dict[str, JsonValue] = Field(
        description="the rest of what the scenario found: histograms, winners"
    )
    time: float
    failures: int
    usage: dict[str, dict[str, int]] = Field(description="language-model use per model")


class RoundsPublic(BaseModel):
    data: list[RoundPublic]
    count: int


class GroupStats(BaseModel):
    round: int
    kind: str = Field(description="the kind's label: one share of the population")
    agents: int = Field(description="recorded agents of this kind")
    cnt: int = Field(description="numeric answers")
    avg: float | None
    min: float | None
    max: float | None
    failed: int


class GroupsPublic(BaseModel):
    data: list[GroupStats]
    count: int


class ResumeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    budget: Budget | None = Field(None, description="a new budget, for a run paused because it spent its own")


class Spend(BaseModel):
    tokens: int = Field(description="prompt and completion tokens")
    cost: float = Field(description="by the models' price tables")


class RoundUsage(Spend):
    round: int


class ModelUse(BaseModel):
    calls: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    saved: int = Field(0, description="calls that agents answering through archetypes did not make")
    cost: float


class UsagePublic(BaseModel):
    """A run's language-model use, priced by its spec's price tables."""

    rounds: list[RoundUsage]
    backgrounds: Spend = Field(description="writing the backgrounds")
    interviews: Spend = Field(description="the run's interviews")
    surveys: Spend = Field(description="the run's surveys")
    models: dict[str, ModelUse] = Field(description="per model: rounds, backgrounds, interviews and surveys")
    total: Spend


_Short = Annotated[str, StringConstraints(max_length=MAX_NAME)]


class InjectIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    content: str = Field(min_length=1, max_length=10_000)
    where: dict[_Short, _Short] | None = Field(
        None, max_length=100, description="only agents with these attribute values"
    )
    public: bool = Field(False, description="add to everyone's public information instead of inboxes")


class AgentPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    agent_id: int
    name: str
    kind: str
    attributes: dict[str, str]
    host: int | None
    node: str | None


class AgentsPublic(BaseModel):
    data: list[AgentPublic]
    count: int


class ActionPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    round: int
    value: float | None
    payload: JsonValue = None
    error: str | None
    tokens: int


class MessagePublic(BaseModel):
    round: int = Field(description="the round it reached the agent in")
    content: str
    public: bool = Field(description="public information for everyone, not a message to the agent")


class AgentDetail(AgentPublic):
    background: str
    actions: list[ActionPublic]
    messages: list[MessagePublic]


class EventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    round: int
    kind: str
    payload: dict[str, JsonValue]
    created_at: UtcDatetime


class EventsPublic(BaseModel):
    data: list[EventPublic]
    count: int


class InterviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    question: str = Field(min_length=1, max_length=2_000)


class InterviewOut(BaseModel):
    agent_id: int
    question: str
    answer: str


class NodePublic(BaseModel):
    node_id: str
    address: str
    cpus: float
    gpus: float
    memory_bytes: int


class HostPublic(BaseModel):
    run_id: int
    index: int
    node_id: str | None
    hostname: str
    pid: int
    agents: int
    steps: int
    failures: int
    rounds: int
    last_round_seconds: float
    rss_bytes: int


class ClusterPublic(BaseModel):
    nodes: list[NodePublic]
    hosts: list[HostPublic]
