"""A run's language-model budget: what it has spent, and whether that reached the budget."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from agents.core import sum_usage
from agents.llm import LLMSpec, priced, tokens
from agents.spec import Budget
from backend.store import records
from backend.workflow.publishing import Publisher

__all__ = ["BudgetKeeper", "Usage"]

Usage = dict[str, dict[str, int]]


class BudgetKeeper:
    """Counts a run's language-model use and holds it to its budget.

    Args:
        budget: the run's budget (None: unlimited).
        llm: the run's models, for prices.
        publisher: reads what was spent outside the rounds from the store.
    """

    def __init__(self, budget: Budget | None, llm: LLMSpec | None, publisher: Publisher) -> None:
        self.budget = budget
        self.llm = llm
        self.publisher = publisher
        self.spent: Usage = {}  # the rounds' use so far, per model

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
        """Why the run's use (`used`, if just read) has reached its budget, if it has."""
        if self.budget is None:
            return None
        if used is None:
            used = await self.used()
        if self.budget.tokens is not None and (count := tokens(used)) >= self.budget.tokens:
            return f"the token budget is spent ({count:,} of {self.budget.tokens:,})"
        if self.budget.cost is not None and (cost := priced(self.llm, used)) >= self.budget.cost:
            return f"the cost budget is spent ({cost:.4f} of {self.budget.cost:g})"
        return None

    def price(self, used: Usage) -> dict[str, float | int]:
        return {"tokens": tokens(used), "cost": priced(self.llm, used)}
