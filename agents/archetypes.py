"""LLM archetypes: agents that share chosen attributes answer through their archetype's calls.

After "On the limits of agency in agent-based models" (AgentTorch, 2024): instead of one model
call per agent per round, the agents of an LLM kind are grouped by the categories of some of
their attributes (`by`), the model is asked `samples` times per archetype and round with the
archetype's profile, and each member draws its answer from its archetype's answers with its own
counter-based draws. A million agents in 1,000 archetypes then cost 5,000 calls a round instead
of a million; what it trades is the diversity within an archetype (members differ only by the
draw among its samples).

Archetypes are per host: a host only holds its own agents, so a run asks Σ over hosts of
(archetypes present on the host × samples) per round; an archetype spread over two hosts is
asked on both. Each call carries a seed made of (run seed, archetype, round, sample): a server
that honours seeds (and the stand-in) answers both hosts alike, and then a run is the same on
any number of hosts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import Field, StringConstraints, field_validator

from agents.columnar import ProfileColumns
from agents.core import NoParams
from agents.rng import DrawArrays, mix

__all__ = ["MAX_ARCHETYPES", "Archetypes", "Grouping", "check_archetypes", "choose"]

MAX_ARCHETYPES = 100_000  # the product of the `by` attributes' categories, at most
_SEED_MASK = (1 << 31) - 1  # servers take a 32-bit signed seed at most

_Attribute = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\n\r]*$")]


class Archetypes(NoParams):
    by: list[_Attribute] = Field(
        min_length=1, max_length=10, description="attributes whose categories make an archetype"
    )
    samples: int = Field(5, ge=1, le=100, description="calls per archetype and round")

    @field_validator("by")
    @classmethod
    def _distinct(cls, by: list[str]) -> list[str]:
        if len(set(by)) != len(by):
            raise ValueError("an attribute is named twice")
        return by


def check_archetypes(archetypes: Mapping[str, Any], attributes: Mapping[str, Mapping[str, float]]) -> None:
    """Raise ValueError ("by: ...") when an archetype attribute is not the population's, or
    when they make more than `MAX_ARCHETYPES` archetypes."""
    by = archetypes["by"]
    for name in by:
        if name not in attributes:
            raise ValueError(f"by: {name!r} is not among population.attributes {sorted(attributes)}")
    count = math.prod(len(attributes[name]) for name in by)
    if count > MAX_ARCHETYPES:
        raise ValueError(
            f"by: {count:,} archetypes (the product of the attributes' categories); "
            f"at most {MAX_ARCHETYPES:,}"
        )


class Grouping:
    """A kind's agents on a host, grouped into the archetypes of `by`.

    `numbers` are the archetypes present, ascending (an archetype's number is its categories'
    codes in mixed radix: the same on every host); `member_of[i]` is agent i's index among them.
    """

    def __init__(self, profiles: ProfileColumns, by: Sequence[str], count: int) -> None:
        codes = np.zeros(count, dtype=np.int64)
        self.categories: list[list[str]] = []
        for name in by:
            categories, dealt = profiles.attribute(name)
            if not categories:
                raise ValueError(f"archetypes: the population has no attribute {name!r}")
            codes = codes * len(categories) + dealt
            self.categories.append(categories)
        self.by = list(by)
        self.numbers, member_of = np.unique(codes, return_inverse=True)
        self.member_of = member_of.astype(np.int64)
        self.sizes = np.bincount(self.member_of, minlength=len(self.numbers))
        # The first member (lowest id) of each archetype: whose copy of a checkpointed state it keeps.
        self.first = np.unique(self.member_of, return_index=True)[1]

    def __len__(self) -> int:
        return len(self.numbers)

    def attributes(self, index: int) -> dict[str, str]:
        """The categories of archetype `index` (among those present), by attribute."""
        number, found = int(self.numbers[index]), {}
        for name, categories in zip(reversed(self.by), reversed(self.categories), strict=True):
            number, code = divmod(number, len(categories))
            found[name] = categories[code]
        return {name: found[name] for name in self.by}

    def seed(self, run_seed: int, index: int, round: int, sample: int) -> int:
        """The sampling seed of one call: the same for an archetype's sample on every host."""
        key = mix(mix(run_seed) ^ int(self.numbers[index]))
        return mix(key ^ mix((round << 16) ^ sample)) & _SEED_MASK

    def spread(self, states: Sequence[Any]) -> np.ndarray:
        """Each agent's copy of its archetype's state (`states` by archetype), aligned with the
        agents: what a checkpoint keeps (a copy is a reference, pickled once)."""
        by_archetype = np.empty(len(states), dtype=object)
        for index, state in enumerate(states):
            by_archetype[index] = state
        return by_archetype[self.member_of]

    def gather(self, states: Sequence[Any] | np.ndarray) -> list[Any]:
        """Each archetype's state from its members' (aligned with the agents): its first
        member's, so hosts placed anew take the same one whichever host it came from."""
        return [states[i] for i in self.first.tolist()]


def choose(
    answers: Sequence[Sequence[float]], group_of: np.ndarray, draws: DrawArrays
) -> tuple[np.ndarray, np.ndarray]:
    """Each agent's answer drawn (with its own `draws`) among its group's `answers` (group
    `group_of[i]`'s for agent i), and whether it had any to draw from. Whole numbers stay int64
    when every answer is one."""
    counts = np.array([len(a) for a in answers], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    flat = [value for group in answers for value in group]
    whole = all(isinstance(v, int) for v in flat)
    values = np.array(flat or [0], dtype=np.int64 if whole else np.float64)
    n = counts[group_of]
    answered = n > 0
    at = starts[group_of] + draws.below(np.maximum(n, 1))
    return np.where(answered, values[np.minimum(at, len(values) - 1)], 0).astype(values.dtype), answered
