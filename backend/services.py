"""The operations that the CLI, the REST API and the dashboard share.

None of them talks to the store or the live layer directly: they call these.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import tempfile
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Collection, Sequence
from pathlib import Path
from typing import Any, Literal

from redis.exceptions import RedisError
from sqlalchemy import select

from agents import admission, llm
from agents.core import Profile, sum_usage
from agents.kinds import KINDS
from agents.personas import write_persona
from agents.placement import Node
from agents.population import Population
from agents.spec import Budget, KindShare, RunSpec, SpecError
from backend.runtime import Runtime
from backend.store import commands, records, runs, signins
from backend.store.models import ActionRow, AgentRow, EventRow, RoundRow, RoundStats, Run, RunStatus
from backend.workflow.budget import spent, stored_use
from backend.workflow.lifecycle import IllegalTransition, check_transition
from backend.workflow.presence import present

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_MEDIA",
    "EXPORT_TABLES",
    "AgentNotFound",
    "BudgetSpent",
    "InterviewFailed",
    "RunNotFound",
    "cluster",
    "control",
    "count_runs",
    "delete_run",
    "events",
    "export",
    "export_file",
    "feed",
    "follow",
    "get_agent",
    "get_run",
    "groups",
    "interview",
    "list_agents",
    "list_runs",
    "live_state",
    "live_states",
    "messages",
    "metrics",
    "preview",
    "preview_personas",
    "reached",
    "remove_export",
    "round_detail",
    "rounds",
    "run_statuses",
    "sign_in",
    "sign_out",
    "sign_out_everywhere",
    "signed_in",
    "submit",
    "usage",
    "workers",
]

log = logging.getLogger(__name__)

ExportTable = Literal["rounds", "actions", "agents", "events"]
ExportFormat = Literal["csv", "json", "parquet"]
EXPORT_TABLES: tuple[ExportTable, ...] = ("rounds", "actions", "agents", "events")
EXPORT_FORMATS: tuple[ExportFormat, ...] = ("csv", "json", "parquet")
EXPORT_MEDIA = {"csv": "text/csv", "json": "application/json", "parquet": "application/vnd.apache.parquet"}
_BATCH = 50_000


async def _tell(call: Awaitable[Any]) -> None:
    """Tell the live layer, if it answers: the database has already recorded what matters, and a
    user's request must not fail (and be sent twice) because Redis blinked."""
    try:
        await call
    except RedisError as e:
        log.warning("the live layer did not hear it: %s: %s", type(e).__name__, e)


async def _announce(
    rt: Runtime, run_id: int, at: int, kind: str, payload: dict[str, Any], /, **state: Any
) -> None:
    """Show live what the database has just recorded: the run's new `state` and its event (of
    round `at`)."""
    await _tell(rt.live.set_state(run_id, **state))
    await _tell(rt.live.emit(run_id, kind, at, payload))


class RunNotFound(LookupError):
    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} not found")
        self.run_id = run_id


async def admit(rt: Runtime, spec: RunSpec) -> None:
    """Raise `SpecError` if `spec` asks for model keys or endpoints the operator does not allow,
    or cannot fit the cluster as its workers last reported it."""
    found = rt.settings.llm_access.problems(spec.llm)
    try:
        nodes = [Node(**n) for n in await rt.live.nodes()]
    except RedisError:  # the live layer is away: the worker checks again when it places the run
        nodes = []
    found += admission.problems(spec, nodes)
    if found:
        raise SpecError(found)


async def submit(rt: Runtime, spec: RunSpec) -> Run:
    """Queue a run, once admitted; a worker will claim it."""
    await admit(rt, spec)
    async with rt.sessions() as session:
        run = await runs.create_run(session, spec=spec)
        queued = {"name": spec.name}
        await records.add_event(session, run_id=run.id, round=0, kind="queued", payload=queued)
        await session.commit()
    state = {"status": RunStatus.QUEUED, "round": 0, "rounds": spec.rounds, "agents": spec.population.total}
    await _announce(rt, run.id, 0, "queued", queued, **state)
    return run


async def get_run(rt: Runtime, run_id: int) -> Run:
    async with rt.sessions() as session:
        run = await runs.get_run(session, run_id=run_id)
    if run is None:
        raise RunNotFound(run_id)
    return run


async def list_runs(
    rt: Runtime, *, limit: int = 50, offset: int = 0, status: str | None = None
) -> Sequence[Run]:
    async with rt.sessions() as session:
        return await runs.list_runs(session, limit=limit, offset=offset, status=status)


async def count_runs(rt: Runtime, *, status: str | None = None) -> int:
    async with rt.sessions() as session:
        return await runs.count_runs(session, status=status)


async def live_state(rt: Runtime, run_id: int) -> dict[str, Any]:
    """What the run's worker reports now (empty for a run no worker has touched, or while the
    live layer is away: pages then show what the database has)."""
    try:
        return await rt.live.state(run_id)
    except RedisError:
        return {}


async def live_states(rt: Runtime, run_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """`live_state` of each of these runs, by run id, in one round trip to the live layer."""
    try:
        return await rt.live.states(run_ids)
    except RedisError:
        return {run_id: {} for run_id in run_ids}


async def run_statuses(rt: Runtime, run_ids: Collection[int]) -> dict[int, str]:
    """The status of each of these runs that still exists, by run id, in one query."""
    async with rt.sessions() as session:
        return await runs.statuses(session, run_ids=run_ids)


async def delete_run(rt: Runtime, run_id: int) -> None:
    """Delete a run that is not running or paused, with everything it recorded."""
    run = await get_run(rt, run_id)
    if run.status in (RunStatus.RUNNING, RunStatus.PAUSED):
        raise IllegalTransition(f"run {run_id} is {run.status}; stop it before deleting it")
    async with rt.sessions() as session:
        await runs.delete_run(session, run_id=run_id)
    await _tell(rt.live.forget(run_id))


INTERVIEW_SECONDS = 60.0


class InterviewFailed(RuntimeError):
    """The agent's language model did not answer."""


class AgentNotFound(LookupError):
    def __init__(self, run_id: int, agent_id: int) -> None:
        super().__init__(f"agent {agent_id} not found in run {run_id}")


async def list_agents(rt: Runtime, run_id: int, **filters: Any) -> tuple[Sequence[AgentRow], int]:
    """A page of the run's agents and how many match (see `records.list_agents` for filters);
    `failed=True` means: failed in the run's last stored round."""
    run = await get_run(rt, run_id)
    if filters.pop("failed", False):
        filters["failed_in"] = run.round
    async with rt.sessions() as session:
        return await records.list_agents(session, run_id=run_id, **filters)


async def get_agent(rt: Runtime, run_id: int, agent_id: int) -> tuple[AgentRow, Sequence[ActionRow]]:
    """An agent's profile and its stored actions, round by round."""
    _, agent, actions = await _agent_of(rt, run_id, agent_id)
    return agent, actions


async def _agent_of(rt: Runtime, run_id: int, agent_id: int) -> tuple[Run, AgentRow, Sequence[ActionRow]]:
    run = await get_run(rt, run_id)
    async with rt.sessions() as session:
        agent = await records.get_agent(session, run_id=run_id, agent_id=agent_id)
        if agent is None:
            raise AgentNotFound(run_id, agent_id)
        return (
            run,
            agent,
            await records.agent_actions(session, run_id=run_id, agent_id=agent_id, rounds=run.round),
        )


async def interview(rt: Runtime, run_id: int, agent_id: int, question: str) -> str:
    """Ask an agent a question. An LLM agent answers in character, through the run's model, from
    its background and recorded answers; a rule-based agent answers from its profile, its kind's
    rule and its recorded answers. Every interview is recorded as an event of the run, with the
    language-model use it cost (counted in the run's usage and budget)."""
    run, agent, actions = await _agent_of(rt, run_id, agent_id)
    spec = RunSpec.stored(run.spec)
    part = next((k for k in spec.population.kinds if k.label == agent.kind), None)
    kind = KINDS.get(part.kind) if part is not None else None
    answers = [f"round {a.round}: {_answer(a)}" for a in actions]
    if part is not None and spec.llm is not None and hasattr(kind, "interview"):
        answer, error, used = await _interview_in_character(
            spec, spec.llm, part, kind, agent, answers, question
        )
    else:
        answer, error, used = _answer_by_rule(kind, agent, answers, question), None, {}
    asked = {"agent": agent_id, "question": question, "answer": answer, "error": error, "usage": used}
    async with rt.sessions() as session:
        await records.add_event(session, run_id=run_id, round=run.round, kind="interview", payload=asked)
        await session.commit()
    await _tell(rt.live.emit(run_id, "interview", run.round, asked))  # into the run page's feed
    if answer is None:
        raise InterviewFailed(f"{agent.name} could not answer: {error}")
    return answer


def _answer_by_rule(kind: Any, agent: AgentRow, answers: list[str], question: str) -> str:
    rule = ""
    if kind is not None:
        doc = (kind.__doc__ or "").strip().splitlines()
        rule = f" My rule: {doc[0].rstrip('.')}." if doc else ""
    history = f" My latest answers — {', '.join(answers[-5:])}." if answers else " I have not answered yet."
    return (
        f"You asked: “{question}”. I am {agent.name}, a {agent.kind} agent. {agent.background}{rule}{history}"
    )


async def _interview_in_character(
    spec: RunSpec,
    models: llm.LLMSpec,
    part: KindShare,
    kind: Any,
    agent: AgentRow,
    answers: list[str],
    question: str,
) -> tuple[str | None, str | None, dict[str, dict[str, int]]]:
    """The agent's model answers for it, called from this process (with this process's keys):
    its reply, or None and why the model gave none; and the calls it took."""
    params = kind.Params.model_validate(part.params)
    profile = Profile(agent.agent_id, agent.name, agent.kind, agent.attributes, agent.background)
    messages = kind.interview(params, profile, spec.scenario.params, answers, question)
    client = llm.LLM(models)
    try:
        reply = await client.model(params.model).chat(messages, deadline=time.monotonic() + INTERVIEW_SECONDS)
        return reply.text, None, client.take_usage()
    except llm.LLMError as e:
        return None, str(e), client.take_usage()
    finally:
        await client.close()


def _answer(action: ActionRow) -> str:
    if action.error is not None:
        return f"no answer ({action.error})"
    value = action.value if action.value is not None else action.payload
    return f"{value:g}" if isinstance(value, float) else json.dumps(value)


async def events(rt: Runtime, run_id: int, limit: int = 100) -> Sequence[EventRow]:
    await get_run(rt, run_id)
    async with rt.sessions() as session:
        return await records.list_events(session, run_id=run_id, limit=limit)


Feed = list[tuple[str, dict[str, Any]]]


def _entry(event: EventRow) -> tuple[str, dict[str, Any]]:
    """A stored event as the run page's feed shows it, with its id as the stream cursor."""
    shown = {"kind": event.kind, "round": event.round, "payload": event.payload}
    return str(event.id), shown | {"time": event.created_at.timestamp()}


async def feed(rt: Runtime, run_id: int, count: int = 50) -> Feed:
    """The run's newest events (rounds included), newest first, with their ids: its stored
    history, whatever happened to the workers or the live layer."""
    async with rt.sessions() as session:
        return [_entry(e) for e in await records.list_events(session, run_id=run_id, limit=count)]


async def follow(rt: Runtime, run_id: int, after: int, wait: float) -> Feed:
    """The run's events stored after event id `after`, oldest first, waiting up to `wait` seconds
    for the live layer to say one came (without it, the wait is just a wait)."""
    try:
        await rt.live.wait_for_event(run_id, wait)
    except RedisError:
        await asyncio.sleep(wait)
    async with rt.sessions() as session:
        return [_entry(e) for e in await records.events_after(session, run_id=run_id, after=after)]


async def messages(rt: Runtime, run_id: int, agent: AgentRow) -> list[dict[str, Any]]:
    """What was injected into the run and reached `agent`: the round it arrived in, its text, and
    whether it was public information or a message to the agent. Only what was delivered: an
    injection applied after the run's last stored round has not reached anyone yet."""
    run = await get_run(rt, run_id)
    async with rt.sessions() as session:
        injected = await commands.applied_injections(session, run_id=run_id, before=run.round)
    reached = []
    for command in injected:
        where = command.payload.get("where") or {}
        if all(agent.attributes.get(k) == v for k, v in where.items()):
            assert command.applied_round is not None
            reached.append(
                {
                    "round": command.applied_round + 1,
                    "content": command.payload["content"],
                    "public": bool(command.payload.get("public")),
                }
            )
    return reached


async def round_detail(rt: Runtime, run_id: int, round: int) -> RoundRow | None:
    """One stored round with its details (the histogram of answers, the winners)."""
    async with rt.sessions() as session:
        return await records.get_round(session, run_id=run_id, round=round)


PREVIEW_CAP = 1_000_000


def preview(spec: RunSpec, count: int = 5) -> list[Profile]:
    """The first `count` profiles the spec's population would have. Above `PREVIEW_CAP` agents
    they come from a population of that size with the same distributions (dealing out a hundred
    million agents for a preview would take seconds)."""
    population = spec.population
    if population.total > PREVIEW_CAP:
        population = population.model_copy(update={"total": PREVIEW_CAP})
    return Population(population, spec.seed).profiles(range(min(count, population.total)))


async def preview_personas(rt: Runtime, spec: RunSpec, profiles: Sequence[Profile]) -> list[str | None]:
    """The personas the spec's model writes for `profiles` (None where none passed the checks),
    called from this process: a look before the run starts. `SpecError` if the operator does not
    allow the model's key or endpoints."""
    persona = spec.population.persona
    if persona is None or spec.llm is None:
        raise ValueError("the spec asks for no personas")
    if found := rt.settings.llm_access.problems(spec.llm):
        raise SpecError(found)
    client = llm.LLM(spec.llm)
    try:
        pool = client.model(persona.model)
        return list(await asyncio.gather(*(write_persona(pool, p, persona) for p in profiles)))
    finally:
        await client.close()


async def metrics(rt: Runtime) -> dict[str, Any]:
    """What `/metrics` reports: runs by status, rounds and agents, the cluster's nodes and hosts
    with their steps and failures, and language-model tokens by model."""
    async with rt.sessions() as session:
        totals = await runs.totals(session)
    found = await cluster(rt)
    tokens: dict[str, dict[str, int]] = sum_usage((await rt.live.state_field("usage")).values())
    return {
        **totals,
        "nodes": len(found["nodes"]),
        "hosts": len(found["hosts"]),
        "steps": sum(h["steps"] for h in found["hosts"]),
        "failures": sum(h["failures"] for h in found["hosts"]),
        "tokens": {
            m: {k: u.get(k, 0) for k in ("prompt_tokens", "completion_tokens")} for m, u in tokens.items()
        },
    }


async def cluster(rt: Runtime) -> dict[str, Any]:
    """The Ray nodes and the hosts of active runs, as the workers last reported them."""
    nodes = await rt.live.nodes()
    hosts = await rt.live.all_hosts()
    return {
        "nodes": nodes,
        "hosts": [{"run_id": run_id, **h} for run_id, found in hosts.items() for h in found],
    }


async def workers(rt: Runtime) -> list[dict[str, Any]]:
    """The workers alive on this database (idle ones first), as they last said; none while the
    live layer is away."""
    try:
        return await present(rt.live, rt.settings)
    except RedisError:
        return []


async def groups(rt: Runtime, run_id: int, round: int | None = None) -> list[dict[str, Any]]:
    """The round statistics broken down by kind of agent (see `records.group_stats`)."""
    await get_run(rt, run_id)
    async with rt.sessions() as session:
        return await records.group_stats(session, run_id=run_id, round=round)


async def usage(
    rt: Runtime, spec: RunSpec, run_id: int, rounds: Sequence[RoundRow] | Sequence[RoundStats]
) -> dict[str, Any]:
    """The run's language-model use: per round (tokens, cost), outside the rounds (writing the
    backgrounds, interviews), per model (calls, failed, tokens, cost; all of it) and in all,
    priced by the spec's price tables."""
    per_round = [
        {"round": r.round, "tokens": llm.tokens(r.usage), "cost": llm.priced(spec.llm, r.usage)}
        for r in rounds
    ]
    async with rt.sessions() as session:
        outside = await records.usage_outside_rounds(session, run_id=run_id)
    used = sum_usage([*(r.usage for r in rounds), *outside.values()])
    models = {name: {**counts, "cost": llm.priced(spec.llm, {name: counts})} for name, counts in used.items()}
    priced = {what: {"tokens": llm.tokens(u), "cost": llm.priced(spec.llm, u)} for what, u in outside.items()}
    return {
        "rounds": per_round,
        **priced,
        "models": models,
        "total": {"tokens": llm.tokens(used), "cost": sum(c["cost"] for c in models.values())},
    }


async def run_rounds(
    rt: Runtime, run_id: int, shown: int | None = None
) -> tuple[Run, list[RoundStats], RoundRow | None]:
    """A run, its rounds' statistics (no details; the language-model use only for a run with a
    model) and round `shown` with its details (None, or a round not stored: the newest; None
    when no round is), read together: one trip to the database for a run page's live part."""
    async with rt.sessions() as session:
        run = await runs.get_run(session, run_id=run_id)
        if run is None:
            raise RunNotFound(run_id)
        llm_used = RunSpec.stored(run.spec).llm is not None
        rounds = await records.round_stats(session, run_id=run_id, usage=llm_used)
        if shown is None or not 1 <= shown <= len(rounds):
            shown = rounds[-1].round if rounds else None
        detail = await records.get_round(session, run_id=run_id, round=shown) if shown is not None else None
        return run, rounds, detail


async def rounds(rt: Runtime, run_id: int, *, details: bool = True) -> Sequence[RoundRow]:
    await get_run(rt, run_id)
    async with rt.sessions() as session:
        return await records.list_rounds(session, run_id=run_id, details=details)


_TARGET = {"pause": RunStatus.PAUSED, "resume": RunStatus.RUNNING, "stop": RunStatus.STOPPED}


async def control(rt: Runtime, run_id: int, action: str, **params: Any) -> Run:
    """Pause, resume, stop or inject into a run. Commands go into the run's command log, which
    its worker reads at the next round boundary (a worker that takes the run over reads it
    too). A run no worker holds is stopped at once; resuming a failed run queues it again, to
    go on from its last checkpoint."""
    run = await get_run(rt, run_id)
    if action == "inject":
        if run.status not in (RunStatus.RUNNING, RunStatus.PAUSED, RunStatus.QUEUED):
            raise IllegalTransition(f"run {run_id} is {run.status}; only an unfinished run takes injections")
        if "content" not in params:
            raise ValueError("inject needs a content")
        _check_where(RunSpec.stored(run.spec), params.get("where"))
        await _log_command(rt, run_id, "inject", params)
        return run
    if action not in _TARGET:
        raise ValueError(f"unknown action {action!r}; known: pause, resume, stop, inject")
    if action == "resume" and run.status == RunStatus.FAILED:
        return await _requeue(rt, run)
    check_transition(run_id, run.status, _TARGET[action])
    command: dict[str, Any] = {}
    if action == "resume" and params.get("budget") is not None:
        command["budget"] = Budget.model_validate(params["budget"]).model_dump()
    if action == "resume":
        await _check_budget(rt, run, command.get("budget"))
    if action == "stop":
        async with rt.sessions() as session:
            stopped = await runs.stop_unclaimed(session, run_id=run_id)
            if stopped:
                await records.add_event(session, run_id=run_id, round=run.round, kind="stopped", payload={})
            await session.commit()
        if stopped:
            await _announce(rt, run_id, run.round, "stopped", {}, status=RunStatus.STOPPED)
            return await get_run(rt, run_id)
    await _log_command(rt, run_id, action, command)
    return run


class BudgetSpent(IllegalTransition):
    """A resume that leaves the run's budget spent: it would only pause again."""


async def _check_budget(rt: Runtime, run: Run, budget: dict[str, Any] | None) -> None:
    """`BudgetSpent`, with the numbers, if the run's use has reached its budget (`budget`, the
    one the resume brings, else its own). The worker checks again when it applies the resume (an
    interview may have spent more meanwhile)."""
    spec = RunSpec.stored(run.spec)
    limit = Budget.model_validate(budget) if budget is not None else spec.budget
    if limit is None:
        return
    async with rt.sessions() as session:
        used = await stored_use(session, run_id=run.id)
    if reason := spent(limit, spec.llm, used):
        raise BudgetSpent(f"run {run.id} cannot resume: {reason}; resume it with a larger budget")


def _check_where(spec: RunSpec, where: dict[str, str] | None) -> None:
    """`SpecError` naming `where.ATTR` when the filter can match nobody: an attribute the
    population does not have, or a category it does not deal out (accepting it would deliver
    the message to no one, silently)."""
    attributes = spec.population.attributes
    found = []
    for key, value in (where or {}).items():
        if key not in attributes:
            has = ", ".join(sorted(attributes)) or "none"
            found.append(f"where.{key}: the population has no attribute {key!r} (it has: {has})")
        elif value not in attributes[key]:
            found.append(
                f"where.{key}: no agent has {key}={value!r} (its categories: {', '.join(attributes[key])})"
            )
    if found:
        raise SpecError(found)


async def reached(rt: Runtime, run_id: int, where: dict[str, str] | None) -> int | None:
    """How many of the run's agents a message with `where` reaches, once their profiles are
    stored (when the run has started); None before. `SpecError` naming `where.ATTR` when the
    filter can match nobody. (Once delivered, the run's "delivered" event says how many it did.)"""
    run = await get_run(rt, run_id)
    _check_where(RunSpec.stored(run.spec), where)
    async with rt.sessions() as session:
        if not await records.count_agents(session, run_id=run_id):
            return None
        if not where:
            return run.agents
        _, count = await records.list_agents(session, run_id=run_id, attributes=where, limit=1)
    return count


async def _log_command(rt: Runtime, run_id: int, action: str, payload: dict[str, Any]) -> None:
    async with rt.sessions() as session:
        await commands.add_command(session, run_id=run_id, action=action, payload=payload)
        await session.commit()


async def _requeue(rt: Runtime, run: Run) -> Run:
    """A failed run goes back in the queue; its next worker rewinds to its last checkpoint."""
    async with rt.sessions() as session:
        if not await runs.requeue(session, run_id=run.id):
            raise IllegalTransition(f"run {run.id} is no longer failed")
        await records.add_event(session, run_id=run.id, round=run.round, kind="resume requested", payload={})
        await session.commit()
    await _announce(rt, run.id, run.round, "resume requested", {}, status=RunStatus.QUEUED, error=None)
    return await get_run(rt, run.id)


_EXPORTS: dict[ExportTable, tuple[type[RoundRow | ActionRow | AgentRow | EventRow], tuple[str, ...], Any]] = {
    "rounds": (RoundRow, ("round", "stats", "details", "time", "failures"), RoundRow.round),
    "actions": (
        ActionRow,
        ("round", "agent_id", "value", "payload", "error", "tokens"),
        (ActionRow.round, ActionRow.agent_id),
    ),
    "agents": (
        AgentRow,
        ("agent_id", "name", "kind", "attributes", "background", "host", "node"),
        AgentRow.agent_id,
    ),
    "events": (EventRow, ("id", "round", "kind", "payload", "created_at"), EventRow.id),
}


async def _rows(rt: Runtime, run_id: int, table: ExportTable) -> AsyncGenerator[list[dict[str, Any]]]:
    model, columns, order = _EXPORTS[table]
    order_by = order if isinstance(order, tuple) else (order,)
    query = select(*(getattr(model, c) for c in columns)).where(model.run_id == run_id).order_by(*order_by)
    async with rt.sessions() as session:
        result = await session.stream(query.execution_options(yield_per=_BATCH))
        async for partition in result.partitions(_BATCH):
            yield [dict(row._mapping) for row in partition]


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """One level of columns for CSV and Parquet: a round's stats become columns of their own,
    other nested values JSON text."""
    flat: dict[str, Any] = {}
    for key, value in row.items():
        if key == "stats" and isinstance(value, dict):
            flat.update(value)
        elif isinstance(value, dict | list):
            flat[key] = json.dumps(value)
        else:
            flat[key] = value.isoformat() if hasattr(value, "isoformat") else value
    return flat


async def export(rt: Runtime, run_id: int, *, table: ExportTable, format: ExportFormat, out: Path) -> int:
    """Write one table of a run to `out` (streamed in batches); returns the number of rows."""
    await get_run(rt, run_id)
    writers = {"csv": _write_csv, "json": _write_json, "parquet": _write_parquet}
    # The stream of rows is closed here, in this task, however the writer ends: one left half-read
    # would keep its session and database connection until the garbage collector finalised it,
    # from whichever task (or none) was running then.
    async with contextlib.aclosing(_rows(rt, run_id, table)) as rows:
        return await writers[format](rows, out)


async def export_file(rt: Runtime, run_id: int, *, table: ExportTable, format: ExportFormat) -> Path:
    """Export one table of a run into a file of its own in a new temporary folder, for a download;
    the caller removes both with `remove_export` once it is sent."""
    folder = Path(tempfile.mkdtemp(prefix="myriad-export-"))
    path = folder / f"run-{run_id}-{table}.{format}"
    try:
        await export(rt, run_id, table=table, format=format, out=path)
    except BaseException:
        remove_export(path)
        raise
    return path


def remove_export(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.parent.rmdir()


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in row.items()}


async def _write_json(batches: AsyncIterator[list[dict[str, Any]]], out: Path) -> int:
    count = 0
    with out.open("w", encoding="utf-8") as f:
        f.write("[")
        async for batch in batches:
            for row in batch:
                f.write(",\n" if count else "\n")
                f.write(json.dumps(_jsonable(row)))
                count += 1
        f.write("\n]\n")
    return count


# A spreadsheet runs a cell that starts like a formula: such text gets a leading quote (OWASP's
# advice for CSV injection), so a run's name or an agent's background cannot run in a user's Excel.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _inert(value: Any) -> Any:
    return "'" + value if isinstance(value, str) and value.startswith(_FORMULA_STARTS) else value


async def _write_csv(batches: AsyncIterator[list[dict[str, Any]]], out: Path) -> int:
    count = 0
    with out.open("w", newline="", encoding="utf-8") as f:
        writer: csv.DictWriter[str] | None = None
        async for batch in batches:
            rows = [{k: _inert(v) for k, v in _flat(r).items()} for r in batch]
            if writer is None:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
            writer.writerows(rows)
            count += len(rows)
    return count


# The Parquet type of a column that may be empty in an export's first batch; others are text
# (JSON payloads are text once flat).
_EMPTY_COLUMNS = {
    "value": "float64",
    "tokens": "int64",
    "host": "int64",
    "failures": "int64",
    "time": "float64",
}


def _typed(pa: Any, field: Any) -> Any:
    """A Parquet column as pyarrow read it from a batch, but typed by its table when it was empty."""
    if not pa.types.is_null(field.type):
        return field
    return field.with_type(pa.type_for_alias(_EMPTY_COLUMNS.get(field.name, "string")))


async def _write_parquet(batches: AsyncIterator[list[dict[str, Any]]], out: Path) -> int:
    import pyarrow as pa  # here: only Parquet exports pay for its import
    import pyarrow.parquet as pq

    count = 0
    writer: pq.ParquetWriter | None = None
    try:
        async for batch in batches:
            frame = pa.Table.from_pylist([_flat(r) for r in batch])
            if writer is None:
                # A column with no value in the first batch (no agent failed yet) gets its table's
                # type: pyarrow's null type is one no later value can be cast to.
                schema = pa.schema([_typed(pa, f) for f in frame.schema])
                writer = pq.ParquetWriter(out, schema)
            writer.write_table(frame.cast(writer.schema))
            count += len(batch)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        pq.write_table(pa.table({}), out)
    return count


# -- dashboard sign-ins ---------------------------------------------------------------------------


async def sign_in(rt: Runtime, *, max_age: float) -> str:
    """A new dashboard sign-in, valid until signed out (or `max_age` seconds, the cookie's life)."""
    async with rt.sessions.begin() as session:
        return await signins.add_sign_in(session, max_age=max_age)


async def signed_in(rt: Runtime, sign_in: str) -> bool:
    async with rt.sessions() as session:
        return await signins.has_sign_in(session, sign_in=sign_in)


async def sign_out(rt: Runtime, sign_in: str) -> None:
    async with rt.sessions.begin() as session:
        await signins.delete_sign_in(session, sign_in=sign_in)


async def sign_out_everywhere(rt: Runtime) -> int:
    """End every dashboard sign-in, in every browser; returns how many there were."""
    async with rt.sessions.begin() as session:
        return await signins.delete_sign_ins(session)
