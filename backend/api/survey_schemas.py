"""What the REST API returns about surveys: a survey with its progress, its answers counted per
question (and per group of agents), and its answers one by one."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from agents.survey import SurveySpec
from backend.api.schemas import UtcDatetime

__all__ = [
    "GroupSummary",
    "Histogram",
    "QuestionSummary",
    "SurveyAnswerPublic",
    "SurveyAnswersPublic",
    "SurveyDetail",
    "SurveyPublic",
    "SurveysPublic",
    "TextSample",
]

SurveyStatus = Literal["queued", "running", "completed", "failed", "budget", "interrupted"]


class SurveyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    run_id: int
    round: int = Field(description="the last round the run had recorded when it was asked")
    status: SurveyStatus = Field(
        description="budget: stopped because the run's budget is spent; interrupted: the process "
        "asking it stopped"
    )
    agents: int = Field(description="agents in the sample")
    answered: int = Field(0, description="answers stored so far, of agents × questions")
    error: str | None
    created_at: UtcDatetime
    finished_at: UtcDatetime | None
    spec: SurveySpec


class SurveysPublic(BaseModel):
    data: list[SurveyPublic]
    count: int


class Histogram(BaseModel):
    labels: list[str] = Field(description="each bin: a whole number, or a range low–high")
    counts: list[int]


class _Outcomes(BaseModel):
    answers: int = Field(description="answers stored: read, unreadable, skipped and failed")
    read: int = Field(description="answers read as a number or an option (or given as text)")
    unreadable: int = Field(description="replies holding no answer of the kind asked")
    skipped: int = Field(
        description="agents whose kind cannot answer (a rule-based kind without a survey hook)"
    )
    failed: int = Field(description="agents whose model did not answer")
    n: int | None = Field(None, description="number questions: numbers read")
    mean: float | None = None
    sd: float | None = Field(None, description="sample standard deviation")
    min: float | None = None
    max: float | None = None
    histogram: Histogram | None = None
    counts: dict[str, int] | None = Field(None, description="choice questions: answers per option")


class GroupSummary(_Outcomes):
    group: str | None = Field(description="the kind, or the attribute's value (None: agents without it)")


class TextSample(BaseModel):
    agent_id: int
    answer: str


class QuestionSummary(_Outcomes):
    question: int = Field(description="its index in the survey's questions")
    text: str
    type: Literal["text", "number", "choice"]
    samples: list[TextSample] | None = Field(None, description="text questions: the first answers")
    groups: list[GroupSummary] = Field(description="the same per group of agents, when broken down `by`")


class SurveyDetail(SurveyPublic):
    by: str | None = Field(description="what the answers are broken down by: kind, or an attribute")
    questions: list[QuestionSummary]


class SurveyAnswerPublic(BaseModel):
    agent_id: int
    question: int
    answer: str | None = Field(description="the reply as given")
    value: float | None = Field(description="a number question's answer as read")
    choice: str | None = Field(description="a choice question's option as read")
    error: str | None = Field(description="why there is no answer: skipped: …, unreadable: …, failed: …")
    tokens: int


class SurveyAnswersPublic(BaseModel):
    data: list[SurveyAnswerPublic]
    count: int
