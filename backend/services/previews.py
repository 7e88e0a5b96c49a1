"""A look at a spec's population before it runs: its first profiles, and the personas its model
would write."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from agents import llm
from agents.core import Profile
from agents.personas import write_persona
from agents.population import Population
from agents.spec import RunSpec, SpecError
from backend.runtime import Runtime

__all__ = ["PREVIEW_CAP", "preview", "preview_personas"]

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
