"""Surveys: questions put to a sample of a run's agents, asked in the background, answers counted.

A survey reads only what the run has stored (its agents' profiles and recorded answers) and
writes only its own rows and one event, so it never changes the simulation's results: it may be
taken while the run is running (at its latest recorded round), paused or ended. The process that
received it asks it, as an asyncio task; the language-model use is billed to the run through the
survey's event, batch by batch, as interviews are.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from redis.exceptions import RedisError

from agents import llm
from agents.core import sum_usage
from agents.kinds import KINDS
from agents.spec import RunSpec
from agents.survey import (
    MAX_SAMPLE,
    Question,
    Sample,
    SurveySpec,
    SurveySpecError,
    Unreadable,
    prompt,
    read,
)
from backend.domain import EventKind, IllegalTransition, RunStatus
from backend.runtime import Runtime
from backend.services._live import tell
from backend.services.agents import answer_text, profile_of
from backend.services.exports import ExportFormat, in_temp_file, stream_rows, write_rows
from backend.services.roster import AgentView, Roster, hosts_of, roster_of, views
from backend.services.runs import get_run, where_problems
from backend.store import agents as stored_agents
from backend.store import records, surveys
from backend.store.actions import RecordedAction
from backend.store.agents import HostRange
from backend.store.models import SurveyRow
from backend.workflow.budget import experiment_spent, spent, stored_use

__all__ = [
    "SURVEY_SECONDS",
    "SurveyNotFound",
    "aggregates",
    "answered",
    "create_survey",
    "export_survey",
    "get_survey",
    "list_surveys",
    "stop_surveys",
    "survey_answers",
    "survey_file",
    "survey_finished",
]

log = logging.getLogger(__name__)

SURVEY_SECONDS = 60.0  # an answer's deadline
CONCURRENCY = 64  # answers asked at once
BATCH = 128  # agents asked between two writes: how often a survey's page sees answers arrive
RECENT = 5  # recorded rounds an agent recalls when it answers
SAMPLES = 5  # free-text answers shown per question
MAX_ERROR = 1_000  # characters of an answer's error: an exception's message may be long
MAX_BINS = 20  # of a number question's histogram
ASKER_GONE = "the process asking it stopped"
PRESENCE = 30.0  # seconds a survey's asker is taken to be alive after it last said so
# A survey reads what the run has recorded: a queued run has nothing yet, a failed one is to be
# resumed first.
SURVEYABLE = frozenset({RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.COMPLETED, RunStatus.STOPPED})

# The tasks asking surveys in this process, by survey: kept here, or the loop could drop them.
_asking: dict[int, asyncio.Task[None]] = {}


class SurveyNotFound(LookupError):
    def __init__(self, run_id: int, survey_id: int) -> None:
        super().__init__(f"survey {survey_id} not found in run {run_id}")


async def create_survey(rt: Runtime, run_id: int, spec: SurveySpec) -> SurveyRow:
    """Store a survey of the run and start asking it in this process (`survey_finished` waits
    for it). Refused (`IllegalTransition`) for a run with nothing recorded to ask, or whose budget
    (or its experiment's, which its runs share) is spent; `SurveySpecError` for a sample that
    names what the run does not have."""
    run = await get_run(rt, run_id)
    if run.status not in SURVEYABLE:
        raise IllegalTransition(f"run {run_id} is {run.status}: only a run that has started can be surveyed")
    run_spec = RunSpec.stored(run.spec)
    _check_sample(run_spec, spec.sample)
    async with rt.sessions() as session:
        if reason := spent(run_spec.budget, run_spec.llm, await stored_use(session, run_id=run_id)):
            raise IllegalTransition(f"run {run_id} cannot be surveyed: {reason}; raise its budget first")
        if run.experiment_id is not None and (
            reason := await experiment_spent(session, experiment_id=run.experiment_id)
        ):
            raise IllegalTransition(
                f"run {run_id} cannot be surveyed: {reason}; "
                f"raise experiment {run.experiment_id}'s budget first"
            )
        if not await stored_agents.hosts(session, run_id=run_id):
            raise IllegalTransition(f"run {run_id} was never placed: it has no agents to ask yet")
        matching = np.flatnonzero(
            (await roster_of(rt, run)).matching(kinds=spec.sample.kinds, attributes=spec.sample.where)
        )
        count = len(matching)
        if not count:
            raise SurveySpecError(["sample: no agent of the run matches"])
        if spec.sample.random is None and count > MAX_SAMPLE:
            raise SurveySpecError([
                f"sample: {count:,} agents match, more than a survey asks (at most {MAX_SAMPLE:,}); "
                f"ask some of them with random: N"
            ])  # fmt: skip
        asked = count if spec.sample.random is None else min(spec.sample.random, count)
        survey = await surveys.create_survey(
            session, run_id=run_id, round=run.round, spec=spec.model_dump(mode="json"), agents=asked
        )
        # Drawn by the run's seed and the survey: reproducible, and its own.
        ids = sample(matching, asked, f"{run.seed}:{survey.id}") if asked < count else matching.tolist()
        # Said before anyone can read it: another process would take it for one nobody asks.
        await tell(rt.live.set_survey_asked(survey.id, PRESENCE))
        await session.commit()
    asking = _Asking(rt, survey, run_spec, spec, ids, experiment=run.experiment_id)
    task = asyncio.create_task(asking.run(), name=f"survey {survey.id}")
    _asking[survey.id] = task
    task.add_done_callback(lambda _: _asking.pop(survey.id, None))
    return survey


# A prime above every agent id (a run has at most 100,000,000 agents): x -> (a x + b) mod PRIME is
# then a permutation of the ids, different for each (a, b).
PRIME = 2**31 - 1


def sample(ids: np.ndarray, n: int, seed: str) -> list[int]:
    """`n` of `ids` drawn at random by `seed` (the same ones for the same seed), in order: the
    first `n` of a seeded permutation of the ids. Every agent is as likely to be drawn; a draw is
    spread evenly over the ids (a permutation x -> a x + b is no shuffle: it rarely leaves a run
    of ids out), which a survey's counts, if anything, gain by."""
    rng = random.Random(seed)
    a, b = rng.randrange(1, PRIME), rng.randrange(PRIME)
    key = (ids.astype(np.int64) * a + b) % PRIME  # below 2**58: no overflow
    first = np.argpartition(key, n - 1)[:n] if n < len(ids) else np.arange(len(ids))
    return np.sort(ids[first]).tolist()


async def survey_finished(survey_id: int) -> None:
    """Wait until this process has finished asking the survey (at once if it is not asking it)."""
    if (task := _asking.get(survey_id)) is not None:
        await asyncio.wait([task])


def _check_sample(spec: RunSpec, sample: Sample) -> None:
    """`SurveySpecError` naming `sample.where.ATTR` or `sample.kinds.N` when the filter names an
    attribute, a category or a kind the population does not have (it would ask nobody)."""
    problems = where_problems(spec, sample.where, at="sample.where")
    labels = [k.label for k in spec.population.kinds]
    for i, label in enumerate(sample.kinds or []):
        if label not in labels:
            has = ", ".join(map(str, labels))
            problems.append(f"sample.kinds.{i}: the population has no kind {label!r} (it has: {has})")
    if problems:
        raise SurveySpecError(problems)


class _Asking:
    """One survey being asked: its agents a batch at a time, each batch's answers and the use so
    far written together, the run's budget (and its `experiment`'s) checked between batches."""

    def __init__(
        self,
        rt: Runtime,
        survey: SurveyRow,
        spec: RunSpec,
        asked: SurveySpec,
        ids: list[int],
        *,
        experiment: int | None = None,
    ) -> None:
        self.rt = rt
        self.experiment = experiment
        self.survey_id, self.run_id, self.round = survey.id, survey.run_id, survey.round
        self.spec = spec
        self.questions = asked.questions
        self.ids = ids
        # Each part of the population by its label: its kind's name, class and parameters, read
        # once. A kind no longer installed here is left out: its agents are skipped.
        self.kinds: dict[str, tuple[str, Any, Any]] = {}
        for part in spec.population.kinds:
            if part.kind in KINDS.names():
                kind = KINDS.get(part.kind)
                self.kinds[str(part.label)] = (part.kind, kind, kind.Params.model_validate(part.params))
        self.client = llm.LLM(spec.llm) if spec.llm is not None else None
        self.limit = asyncio.Semaphore(CONCURRENCY)
        self.used: dict[str, dict[str, int]] = {}
        self.answered = 0
        self.event_id: int | None = None
        self.roster: Roster | None = None  # read with the first batch
        self.hosts: list[HostRange] = []
        self.event = {
            "survey": survey.id,
            "name": asked.name,
            "agents": len(ids),
            "questions": len(asked.questions),
        }

    async def run(self) -> None:
        status, error = "completed", None
        presence = asyncio.create_task(self._present())
        try:
            async with self.rt.sessions() as session:
                await surveys.mark(session, survey_id=self.survey_id, status="running")
                self.event_id = await records.add_event(
                    session,
                    run_id=self.run_id,
                    round=self.round,
                    kind=EventKind.SURVEY,
                    payload=self._payload("running"),
                )
                await session.commit()
            # Into the run page's feed, which reads the stored events when the live layer says so.
            await tell(self.rt.live.emit(self.run_id, EventKind.SURVEY, self.round, self._payload("running")))
            for start in range(0, len(self.ids), BATCH):
                if reason := await self._spent():
                    status, error = "budget", reason
                    break
                await self._batch(self.ids[start : start + BATCH])
        except asyncio.CancelledError:
            status, error = "interrupted", ASKER_GONE
            raise
        except Exception as e:  # the survey fails with the reason; the process goes on
            log.exception("survey %s of run %s failed", self.survey_id, self.run_id)
            status, error = "failed", f"{type(e).__name__}: {e}"
        finally:
            presence.cancel()
            if self.client is not None:
                # Calls that ended in a batch never stored (interrupted, failed) were spent too.
                self.used = sum_usage([self.used, self.client.take_usage()])
                await self.client.close()
            await self._end(status, error)

    async def _present(self) -> None:
        """Say that this process is asking the survey until it is done (see `_settle`)."""
        while True:
            await tell(self.rt.live.set_survey_asked(self.survey_id, PRESENCE))
            await asyncio.sleep(PRESENCE / 3)

    def _payload(self, status: str) -> dict[str, Any]:
        return {**self.event, "status": status, "answered": self.answered, "usage": self.used}

    async def _spent(self) -> str | None:
        """Why the run's budget, or its experiment's, is spent, if either is."""
        async with self.rt.sessions() as session:
            if reason := spent(
                self.spec.budget, self.spec.llm, await stored_use(session, run_id=self.run_id)
            ):
                return reason
            if self.experiment is not None:
                return await experiment_spent(session, experiment_id=self.experiment)
            return None

    async def _batch(self, ids: Sequence[int]) -> None:
        if self.roster is None:
            self.roster = await roster_of(self.rt, await get_run(self.rt, self.run_id))
            self.hosts = await hosts_of(self.rt, self.run_id)
        agents = await views(self.rt, self.run_id, self.roster, ids, self.hosts)
        async with self.rt.sessions() as session:
            recent = range(max(1, self.round - RECENT + 1), self.round + 1)
            actions = await surveys.recent_actions(session, run_id=self.run_id, ids=ids, rounds=recent)
        rows = await asyncio.gather(
            *(
                self._answer(agent, actions.get(agent.agent_id, []), i, q)
                for agent in agents
                for i, q in enumerate(self.questions)
            )
        )
        if self.client is not None:
            self.used = sum_usage([self.used, self.client.take_usage()])
        self.answered += len(rows)
        assert self.event_id is not None  # recorded before the first batch
        async with self.rt.sessions() as session:
            await surveys.add_answers(session, survey_id=self.survey_id, rows=rows)
            # The use so far is on the run's bill with the answers that cost it, never apart.
            await surveys.set_event_payload(session, event_id=self.event_id, payload=self._payload("running"))
            await session.commit()

    async def _answer(
        self, agent: AgentView, actions: list[RecordedAction], index: int, question: Question
    ) -> dict[str, Any]:
        """The agent's answer to a question, as a row to store. An agent whose kind fails to
        answer (its `survey` hook or `interview` raises) fails this answer alone, with the
        reason, as a round isolates an agent's error: the survey goes on."""
        row: dict[str, Any] = {"agent_id": agent.agent_id, "question": index, "tokens": 0}
        try:
            return await self._reply(row, agent, actions, question)
        except Exception as e:
            log.warning("survey %s: agent %s failed to answer", self.survey_id, agent.agent_id, exc_info=True)
            # Only what is sure: the tokens a reply cost are billed even if reading it failed.
            return {k: row[k] for k in ("agent_id", "question", "tokens")} | {
                "error": f"failed: {type(e).__name__}: {e}"[:MAX_ERROR]
            }

    async def _reply(
        self, row: dict[str, Any], agent: AgentView, actions: list[RecordedAction], question: Question
    ) -> dict[str, Any]:
        if agent.kind not in self.kinds:
            return row | {"error": f"skipped: its kind is not installed here ({agent.kind})"}
        name, kind, params = self.kinds[agent.kind]
        if self.client is not None and hasattr(kind, "interview"):
            said = [f"round {a.round}: {answer_text(a)}" for a in actions]
            messages = kind.interview(
                params, profile_of(agent), self.spec.scenario.params, said, prompt(question)
            )
            async with self.limit:
                try:
                    reply = await self.client.model(params.model).chat(
                        messages, deadline=time.monotonic() + SURVEY_SECONDS
                    )
                except llm.LLMError as e:
                    return row | {"error": f"failed: {e}"}
            text, row["tokens"] = reply.text, reply.tokens
        elif (hook := getattr(kind, "survey", None)) is not None:
            recorded = {
                a.round: None if a.error else (a.value if a.value is not None else a.payload) for a in actions
            }
            text = hook(params, profile_of(agent), question, recorded)
            if text is None:
                return row | {"error": f"skipped: kind {name} has no answer to a {question.type} question"}
            if not isinstance(text, str):
                raise TypeError(f"kind {name}'s survey hook gave a {type(text).__name__}, not text")
        else:
            return row | {"error": f"skipped: rule-based kind {name} has no survey hook"}
        row["answer"] = text
        try:
            row["value"], row["choice"] = read(question, text)
        except Unreadable as e:
            row["error"] = str(e)
        return row

    async def _end(self, status: str, error: str | None) -> None:
        async with self.rt.sessions() as session:
            # The true end, even over an `interrupted` a reader guessed while the live layer was away.
            await surveys.finish(session, survey_ids=[self.survey_id], status=status, error=error, asker=True)
            if self.event_id is not None:
                await surveys.set_event_payload(
                    session, event_id=self.event_id, payload=self._payload(status)
                )
            await session.commit()


# -- reading ---------------------------------------------------------------------------------------


async def _settle(rt: Runtime, found: Sequence[SurveyRow]) -> list[SurveyRow]:
    """`found`, with the surveys still being asked by no process marked `interrupted`: the one
    asking it says so to the live layer every few seconds (`_Asking._present`) until it is done.
    A process reading the database alone (no live layer) cannot tell, and shows them as stored;
    so does one whose live layer does not answer (Redis blinked): not knowing is no sign that the
    asker is gone."""
    live = getattr(rt, "live", None)
    active = [s.id for s in found if s.status in surveys.ACTIVE and s.id not in _asking]
    if live is None or not active:
        return list(found)
    try:
        gone = set(active) - await live.surveys_asked(active)
    except RedisError as e:
        log.warning("cannot tell whether surveys %s are still asked: %s: %s", active, type(e).__name__, e)
        return list(found)
    if not gone:
        return list(found)
    async with rt.sessions() as session:
        await surveys.finish(session, survey_ids=gone, status="interrupted", error=ASKER_GONE)
        await session.commit()
        ended = {s.id: s for s in await surveys.surveys_by_id(session, ids=gone)}
    return [ended.get(s.id, s) for s in found]


async def get_survey(rt: Runtime, run_id: int, survey_id: int) -> SurveyRow:
    await get_run(rt, run_id)
    async with rt.sessions() as session:
        survey = await surveys.get_survey(session, run_id=run_id, survey_id=survey_id)
    if survey is None:
        raise SurveyNotFound(run_id, survey_id)
    (settled,) = await _settle(rt, [survey])
    return settled


async def list_surveys(rt: Runtime, run_id: int) -> list[SurveyRow]:
    """The run's surveys, newest first."""
    await get_run(rt, run_id)
    async with rt.sessions() as session:
        found = await surveys.list_surveys(session, run_id=run_id)
    return await _settle(rt, found)


async def answered(rt: Runtime, survey_ids: Sequence[int]) -> dict[int, int]:
    """How many answers each survey has stored so far (of agents × questions)."""
    async with rt.sessions() as session:
        return await surveys.answered(session, survey_ids=survey_ids)


async def survey_answers(
    rt: Runtime, run_id: int, survey_id: int, *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """A page of the survey's answers (by agent, then question) and how many there are."""
    await get_survey(rt, run_id, survey_id)
    async with rt.sessions() as session:
        return await surveys.list_answers(session, survey_id=survey_id, limit=limit, offset=offset)


async def aggregates(rt: Runtime, survey: SurveyRow, by: str | None = None) -> list[dict[str, Any]]:
    """Each question's answers counted: outcomes (read, unreadable, skipped, failed); a number's
    histogram over its range, mean, sd, n; a choice's count per option; free text's first answers.
    With `by` (`kind`, or an attribute of the run's population), the same per group of agents."""
    questions = SurveySpec.model_validate(survey.spec).questions
    if by is not None:
        run = await get_run(rt, survey.run_id)
        attributes = RunSpec.stored(run.spec).population.attributes
        if by != "kind" and by not in attributes:
            has = ", ".join(["kind", *sorted(attributes)])
            raise SurveySpecError([f"by: the population has no attribute {by!r} (break down by: {has})"])
    async with rt.sessions() as session:
        counts = await surveys.answer_counts(session, survey_id=survey.id, by_agent=by is not None)
        samples = {
            i: await surveys.answer_samples(session, survey_id=survey.id, question=i, limit=SAMPLES)
            for i, q in enumerate(questions)
            if q.type == "text"
        }
    if by is not None:
        counts = _grouped(counts, await roster_of(rt, await get_run(rt, survey.run_id)), by)
    found = []
    for i, question in enumerate(questions):
        mine = [
            (group, outcome, value, choice, n) for q, group, outcome, value, choice, n in counts if q == i
        ]
        groups = sorted({group for group, *_ in mine}, key=lambda g: (g is None, str(g)))
        summary = {
            "question": i,
            "text": question.text,
            "type": question.type,
            **_summarize(question, [row[1:] for row in mine]),
            "groups": [
                {"group": g, **_summarize(question, [row[1:] for row in mine if row[0] == g])}
                for g in groups
                if by is not None
            ],
        }
        if question.type == "text":
            summary["samples"] = [{"agent_id": agent, "answer": text} for agent, text in samples[i]]
        found.append(summary)
    return found


def _grouped(
    counts: Sequence[tuple[int, Any, str, float | None, str | None, int]], roster: Roster, by: str
) -> list[tuple[int, Any, str, float | None, str | None, int]]:
    """Counts by agent (`answer_counts`) summed by the agents' kind or category of attribute `by`."""
    labels, codes = (roster.labels, roster.kinds) if by == "kind" else roster.population.attribute(by)
    agents = np.array([agent for _, agent, *_ in counts], dtype=np.int64)
    groups = [labels[c] for c in codes[agents].tolist()]
    summed: Counter[tuple[int, Any, str, float | None, str | None]] = Counter()
    for (question, _, outcome, value, choice, n), group in zip(counts, groups, strict=True):
        summed[question, group, outcome, value, choice] += n
    return [(*key, n) for key, n in summed.items()]


def _summarize(
    question: Question, counts: Sequence[tuple[str, float | None, str | None, int]]
) -> dict[str, Any]:
    """One question's answers (or one group's), from (outcome, value, choice, count) rows."""
    outcomes = dict.fromkeys(("read", "unreadable", "skipped", "failed"), 0)
    for outcome, _, _, n in counts:
        outcomes[outcome] += n
    summary: dict[str, Any] = {"answers": sum(outcomes.values()), **outcomes}
    read = [(value, choice, n) for outcome, value, choice, n in counts if outcome == "read"]
    if question.type == "number":
        assert question.min is not None
        assert question.max is not None
        summary |= _numbers([(v, n) for v, _, n in read if v is not None], question.min, question.max)
    elif question.type == "choice":
        assert question.options is not None
        chosen = dict.fromkeys(question.options, 0)
        for _, choice, n in read:
            if choice in chosen:
                chosen[choice] += n
        summary["counts"] = chosen
    return summary


def _numbers(values: Sequence[tuple[float, int]], low: float, high: float) -> dict[str, Any]:
    """n, mean, sd (sample), min, max and a histogram over [low, high] of (value, count) pairs:
    one bin per whole number when the range holds at most `MAX_BINS + 1` of them and every value
    is whole, else `MAX_BINS` equal bins (the last one closed)."""
    low, high = float(low), float(high)
    n = sum(c for _, c in values)
    mean = math.fsum(v * c for v, c in values) / n if n else None
    sd = (
        math.sqrt(math.fsum(c * (v - mean) ** 2 for v, c in values) / (n - 1))
        if mean is not None and n > 1
        else None
    )
    whole = (
        low.is_integer()
        and high.is_integer()
        and high - low <= MAX_BINS
        and all(v.is_integer() for v, _ in values)
    )
    if whole:
        labels = [f"{low + i:g}" for i in range(int(high - low) + 1)]
    else:
        width = (high - low) / MAX_BINS
        edges = [low + i * width for i in range(MAX_BINS + 1)]
        labels = [f"{a:.4g}–{b:.4g}" for a, b in itertools.pairwise(edges)]
    histogram = [0] * len(labels)
    for value, count in values:
        at = int(value - low) if whole else min(int((value - low) / (high - low) * MAX_BINS), MAX_BINS - 1)
        histogram[at] += count
    return {
        "n": n,
        "mean": mean,
        "sd": sd,
        "min": min((v for v, _ in values), default=None),
        "max": max((v for v, _ in values), default=None),
        "histogram": {"labels": labels, "counts": histogram},
    }


# -- export ----------------------------------------------------------------------------------------


async def export_survey(rt: Runtime, run_id: int, survey_id: int, *, format: ExportFormat, out: Path) -> int:
    """Write the survey's answers to `out` (streamed in batches); returns how many."""
    await get_survey(rt, run_id, survey_id)
    rows = stream_rows(rt, surveys.answers_query(survey_id))
    return await write_rows(rows, format, out, header=surveys.ANSWER_COLUMNS)


async def survey_file(rt: Runtime, run_id: int, survey_id: int, *, format: ExportFormat) -> Path:
    """The survey's answers in a file of their own, for a download (remove it with
    `remove_export` once sent)."""
    name = f"run-{run_id}-survey-{survey_id}.{format}"
    return await in_temp_file(name, functools.partial(export_survey, rt, run_id, survey_id, format=format))


async def stop_surveys() -> None:
    """Stop asking this process's surveys (it is shutting down): each ends `interrupted`, with the
    answers and the use stored so far."""
    tasks = list(_asking.values())
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
