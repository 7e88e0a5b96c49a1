"""What a run recorded: its events (the feed, followed live), its rounds with their statistics
and details, and its language-model use."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from agents import llm
from agents.core import sum_usage
from agents.spec import RunSpec
from backend.runtime import Runtime
from backend.services.roster import roster_of
from backend.services.runs import RunNotFound, get_run
from backend.store import records, runs
from backend.store.models import EventRow, RoundRow, RoundStats, Run
from backend.workflow.budget import Usage

__all__ = [
    "CHART_POINTS",
    "TABLE_ROUNDS",
    "Feed",
    "RoundsShown",
    "events",
    "feed",
    "follow",
    "groups",
    "round_detail",
    "rounds",
    "run_rounds",
    "usage",
]


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


async def round_detail(rt: Runtime, run_id: int, round: int) -> RoundRow | None:
    """One stored round with its details (the histogram of answers, the winners)."""
    async with rt.sessions() as session:
        return await records.get_round(session, run_id=run_id, round=round)


async def groups(rt: Runtime, run_id: int, round: int | None = None) -> list[dict[str, Any]]:
    """The round statistics broken down by kind of agent (see `records.group_stats`)."""
    run = await get_run(rt, run_id)
    if not run.round:
        return []  # nothing stored to count (and a queued run's agents need not be built)
    roster = await roster_of(rt, run)
    async with rt.sessions() as session:
        return await records.group_stats(
            session, run_id=run_id, labels=roster.labels, kinds=roster.kinds, round=round
        )


async def usage(
    rt: Runtime,
    spec: RunSpec,
    run_id: int,
    rounds: Sequence[RoundRow] | Sequence[RoundStats],
    in_rounds: Usage | None = None,
) -> dict[str, Any]:
    """The run's language-model use: per round of `rounds` (tokens, cost), outside the rounds
    (writing the backgrounds, interviews), per model (calls, failed, tokens, cost; all of it)
    and in all, priced by the spec's price tables. `in_rounds`: the rounds' use in all, when
    `rounds` are not all of them."""
    per_round = [
        {"round": r.round, "tokens": llm.tokens(r.usage), "cost": llm.priced(spec.llm, r.usage)}
        for r in rounds
    ]
    async with rt.sessions() as session:
        outside = await records.usage_outside_rounds(session, run_id=run_id)
    used = sum_usage(
        [in_rounds if in_rounds is not None else sum_usage(r.usage for r in rounds), *outside.values()]
    )
    models = {name: {**counts, "cost": llm.priced(spec.llm, {name: counts})} for name, counts in used.items()}
    priced = {what: {"tokens": llm.tokens(u), "cost": llm.priced(spec.llm, u)} for what, u in outside.items()}
    return {
        "rounds": per_round,
        **priced,
        "models": models,
        "total": {"tokens": llm.tokens(used), "cost": sum(c["cost"] for c in models.values())},
    }


CHART_POINTS = 250  # a figure over the rounds draws about this many at most: every k-th round
TABLE_ROUNDS = 50  # the statistics table shows the newest rounds; the export has them all


@dataclass(frozen=True)
class RoundsShown:
    """A run's rounds as its page shows them, read in one query however long the run (a page
    polled every second read all of a run's thousands of rounds, and drew them all).

    Attributes:
        recorded: the newest round stored (0 for none).
        newest: the newest `TABLE_ROUNDS` rounds, in order.
        spread: every k-th round and the newest, at most about `CHART_POINTS`: a figure's points.
        usage: a run with a model: its rounds' language-model use, up to `recorded` (the same
            rounds as the rest, though more may be stored by now).
    """

    recorded: int
    newest: list[RoundStats]
    spread: list[RoundStats]
    usage: Usage | None = None


async def run_rounds(
    rt: Runtime, run_id: int, round: int | None = None
) -> tuple[Run, RoundsShown, RoundRow | None]:
    """A run, its rounds' statistics as its page shows them (no details; the language-model use
    only for a run with a model) and round `round` with its details (None, or a round not
    stored: the newest; None when no round is), read together: one trip to the database for a
    run page's live part."""
    async with rt.sessions() as session:
        run = await runs.get_run(session, run_id=run_id)
        if run is None:
            raise RunNotFound(run_id)
        llm_used = RunSpec.stored(run.spec).llm is not None
        every = max(1, -(-run.round // CHART_POINTS))
        rows = await records.round_stats(
            session, run_id=run_id, usage=llm_used, every=every, newest_from=run.round - TABLE_ROUNDS + 1
        )
        recorded = rows[-1].round if rows else 0
        if round is None or not 1 <= round <= recorded:
            round = recorded or None
        detail = await records.get_round(session, run_id=run_id, round=round) if round is not None else None
        used = await records.usage_totals(session, run_id=run_id, upto=recorded) if llm_used else None
    spread = [r for r in rows if r.round % every == 0 or r.round == recorded]
    return run, RoundsShown(recorded, rows[-TABLE_ROUNDS:], spread, used), detail


async def rounds(rt: Runtime, run_id: int, *, details: bool = True) -> Sequence[RoundRow]:
    await get_run(rt, run_id)
    async with rt.sessions() as session:
        return await records.list_rounds(session, run_id=run_id, details=details)
