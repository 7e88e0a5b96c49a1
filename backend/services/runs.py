"""Runs: submit, read, list, delete and control them (pause, resume, stop, inject), their live
states, and the checks a resume or an injection must pass."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from redis.exceptions import RedisError

from agents import admission
from agents.placement import Node
from agents.spec import Budget, RunSpec, SpecError
from backend.domain import EventKind, IllegalTransition, RunStatus, check_transition
from backend.runtime import Runtime
from backend.services._live import announce, tell
from backend.services.roster import hosts_of, roster_of
from backend.store import commands, records, runs
from backend.store.models import Run
from backend.workflow.budget import experiment_spent, spent, stored_use

__all__ = [
    "BudgetSpent",
    "RunNotFound",
    "admit",
    "control",
    "count_runs",
    "delete_run",
    "get_run",
    "list_runs",
    "live_state",
    "live_states",
    "reached",
    "run_statuses",
    "submit",
]


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
        await records.add_event(session, run_id=run.id, round=0, kind=EventKind.QUEUED, payload=queued)
        await session.commit()
    state = {"status": RunStatus.QUEUED, "round": 0, "rounds": spec.rounds, "agents": spec.population.total}
    await announce(rt, run.id, 0, EventKind.QUEUED, queued, **state)
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
    await tell(rt.live.forget(run_id))


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
                await records.add_event(
                    session, run_id=run_id, round=run.round, kind=EventKind.STOPPED, payload={}
                )
            await session.commit()
        if stopped:
            await announce(rt, run_id, run.round, EventKind.STOPPED, {}, status=RunStatus.STOPPED)
            return await get_run(rt, run_id)
    await _log_command(rt, run_id, action, command)
    return run


class BudgetSpent(IllegalTransition):
    """A resume that leaves the run's budget spent: it would only pause again."""


async def _check_budget(rt: Runtime, run: Run, budget: dict[str, Any] | None) -> None:
    """`BudgetSpent`, with the numbers, if the run's use has reached its budget (`budget`, the
    one the resume brings, else its own), or its experiment's runs together theirs. The worker
    checks again when it applies the resume (an interview may have spent more meanwhile)."""
    spec = RunSpec.stored(run.spec)
    limit = Budget.model_validate(budget) if budget is not None else spec.budget
    async with rt.sessions() as session:
        if limit is not None and (reason := spent(limit, spec.llm, await stored_use(session, run_id=run.id))):
            raise BudgetSpent(f"run {run.id} cannot resume: {reason}; resume it with a larger budget")
        # A run of an experiment shares its experiment's budget: only the experiment can raise it.
        if run.experiment_id is not None and (
            reason := await experiment_spent(session, experiment_id=run.experiment_id)
        ):
            raise BudgetSpent(
                f"run {run.id} cannot resume: {reason}; resume experiment {run.experiment_id} "
                "with a larger budget"
            )


def _check_where(spec: RunSpec, where: dict[str, str] | None) -> None:
    """`SpecError` naming `where.ATTR` when the filter can match nobody (accepting it would
    deliver the message to no one, silently)."""
    if found := where_problems(spec, where, at="where"):
        raise SpecError(found)


def where_problems(spec: RunSpec, where: dict[str, str] | None, *, at: str) -> list[str]:
    """Why a filter on attributes (`at`, the field that holds it) can match nobody: an attribute
    the population does not have, or a category it does not deal out; one line per attribute."""
    attributes = spec.population.attributes
    found = []
    for key, value in (where or {}).items():
        if key not in attributes:
            has = ", ".join(sorted(attributes)) or "none"
            found.append(f"{at}.{key}: the population has no attribute {key!r} (it has: {has})")
        elif value not in attributes[key]:
            found.append(
                f"{at}.{key}: no agent has {key}={value!r} (its categories: {', '.join(attributes[key])})"
            )
    return found


async def reached(rt: Runtime, run_id: int, where: dict[str, str] | None) -> int | None:
    """How many of the run's agents a message with `where` reaches, once they are placed (when
    the run has started); None before. `SpecError` naming `where.ATTR` when the
    filter can match nobody. (Once delivered, the run's "delivered" event says how many it did.)"""
    run = await get_run(rt, run_id)
    _check_where(RunSpec.stored(run.spec), where)
    if not await hosts_of(rt, run_id):
        return None
    if not where:
        return run.agents
    return int(np.count_nonzero((await roster_of(rt, run)).matching(attributes=where)))


async def _log_command(rt: Runtime, run_id: int, action: str, payload: dict[str, Any]) -> None:
    async with rt.sessions() as session:
        await commands.add_command(session, run_id=run_id, action=action, payload=payload)
        await session.commit()
    await tell(rt.live.command_sent(run_id))  # unheard, the worker still reads it within a second


async def _requeue(rt: Runtime, run: Run) -> Run:
    """A failed run goes back in the queue; its next worker rewinds to its last checkpoint."""
    async with rt.sessions() as session:
        if not await runs.requeue(session, run_id=run.id):
            raise IllegalTransition(f"run {run.id} is no longer failed")
        await records.add_event(
            session, run_id=run.id, round=run.round, kind=EventKind.RESUME_REQUESTED, payload={}
        )
        await session.commit()
    await announce(rt, run.id, run.round, EventKind.RESUME_REQUESTED, {}, status=RunStatus.QUEUED, error=None)
    return await get_run(rt, run.id)
