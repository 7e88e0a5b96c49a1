"""A run's language-model budget: what it has spent, and whether that reached the budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession

from agents.core import sum_usage
from agents.llm import LLMSpec, priced, tokens
from agents.spec import Budget, RunSpec
from backend.domain import EventKind
from backend.store import experiments, records
from backend.store.runs import fence

if TYPE_CHECKING:  # the service checks budgets too (a resume), without the engine the worker has
    from backend.workflow.publishing import Publisher

__all__ = ["BudgetKeeper", "Usage", "experiment_spent", "spent", "spent_across", "stored_use"]

Usage = dict[str, dict[str, int]]


def spent(budget: Budget | None, llm: LLMSpec | None, used: Usage) -> str | None:
    """Why `used` has reached `budget`, with the numbers, if it has (None: it has not, or there
    is no budget)."""
    return spent_across(budget, [(llm, used)])


def spent_across(
    budget: Budget | None, uses: Sequence[tuple[LLMSpec | None, Usage]], whose: str = "the"
) -> str | None:
    """`spent` of several runs' use together (an experiment's), each priced by its own models."""
    if budget is None:
        return None
    if budget.tokens is not None and (count := sum(tokens(used) for _, used in uses)) >= budget.tokens:
        return f"{whose} token budget is spent ({count:,} of {budget.tokens:,})"
    if budget.cost is not None and (cost := sum(priced(llm, used) for llm, used in uses)) >= budget.cost:
        return f"{whose} cost budget is spent ({cost:.4f} of {budget.cost:g})"
    return None


async def experiment_spent(session: AsyncSession, *, experiment_id: int) -> str | None:
    """Why the experiment's runs together have reached its budget, if they have."""
    budget = await experiments.budget_of(session, experiment_id=experiment_id)
    if budget is None:
        return None
    return spent_across(
        budget, await experiments.uses(session, experiment_id=experiment_id), "the experiment's"
    )


async def stored_use(session: AsyncSession, *, run_id: int) -> Usage:
    """A run's language-model use as stored: its recorded rounds', and what was spent outside
    them (backgrounds, interviews)."""
    rounds = await records.usage_totals(session, run_id=run_id)
    outside = await records.usage_outside_rounds(session, run_id=run_id)
    return sum_usage([rounds, *outside.values()])


class BudgetKeeper:
    """Counts a run's language-model use and holds it to its budget.

    Args:
        spec: the run's spec: its budget (None: unlimited) and its models' prices.
        publisher: reads what was spent outside the rounds from the store.
        experiment: the experiment the run is of, whose budget its runs share (read at each
            check: a resume may have raised it).
    """

    def __init__(self, spec: RunSpec, publisher: Publisher, experiment: int | None = None) -> None:
        self.spec = spec
        self.experiment = experiment
        self.budget = spec.budget
        self.llm = spec.llm
        self.publisher = publisher
        self.spent: Usage = {}  # the rounds' use so far, per model
        self.experiment_spent = False  # the last `over` found the experiment's budget spent

    def __repr__(self) -> str:
        return f"BudgetKeeper(budget={self.budget}, tokens={tokens(self.spent)})"

    def add(self, usage: Usage) -> None:
        self.spent = sum_usage([self.spent, usage])

    async def rewound(self) -> None:
        """Count the rounds' use again from the store, after a rewind forgot the later rounds."""

        async def read(session: AsyncSession) -> Usage:
            return await records.usage_totals(session, run_id=self.publisher.run_id)

        self.spent = await self.publisher.store(read)

    async def used(self) -> Usage:
        """The run's use so far: its rounds', and what was spent outside them (backgrounds, and
        interviews, which the service asks), read from the store."""

        async def read(session: AsyncSession) -> dict[str, Usage]:
            return await records.usage_outside_rounds(session, run_id=self.publisher.run_id)

        return sum_usage([self.spent, *(await self.publisher.store(read)).values()])

    async def over(self, used: Usage | None = None) -> str | None:
        """Why the run's use (`used`, if just read) has reached its budget, or its experiment's
        runs together theirs, if either has."""
        if self.budget is not None and (
            reason := spent(self.budget, self.llm, used if used is not None else await self.used())
        ):
            return reason
        if (experiment := self.experiment) is None:
            return None

        async def read(session: AsyncSession) -> str | None:
            return await experiment_spent(session, experiment_id=experiment)

        reason = await self.publisher.store(read)
        self.experiment_spent = reason is not None
        return reason

    async def hold_experiment(self) -> None:
        """Keep the experiment's queued runs from starting (its budget is spent): they would only
        pause at once, each holding a place of its `max_parallel`. Its resume lets them go."""
        assert self.experiment is not None
        experiment = self.experiment

        async def hold(session: AsyncSession) -> None:
            await experiments.set_paused(session, experiment_id=experiment, paused=True)
            await session.commit()

        await self.publisher.store(hold)

    def price(self, used: Usage) -> dict[str, float | int]:
        return {"tokens": tokens(used), "cost": priced(self.llm, used)}

    async def raise_to(self, round: int, budget: dict[str, Any]) -> None:
        """A new budget, kept in the run's stored spec so that a worker taking over knows it."""
        self.spec = self.spec.model_copy(update={"budget": Budget.model_validate(budget)})
        self.budget = self.spec.budget
        stored = self.spec.model_dump(mode="json")
        publisher = self.publisher

        async def write(session: AsyncSession) -> None:
            await fence(session, run_id=publisher.run_id, worker=publisher.worker, spec=stored)
            await session.commit()

        await publisher.store(write)
        await publisher.event(round, EventKind.BUDGET_RAISED, {"budget": budget})
