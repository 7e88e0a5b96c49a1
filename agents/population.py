"""Background generation, first half: a population spec becomes exactly `total` diverse profiles.

Each attribute's categories are counted exactly (largest-remainder rounding of the percentages)
and dealt out by a permutation seeded from (run seed, attribute), and so is the mix of agent kinds.
Any process can rebuild any slice of the population from the spec and the seed alone, so hosts
generate their own agents instead of receiving millions of profiles over the network.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from itertools import repeat
from types import MappingProxyType

import numpy as np

from agents import names
from agents.apportion import largest_remainder
from agents.core import Agent, AgentContext, Profile
from agents.kinds import KINDS
from agents.rng import Draws, agent_key
from agents.spec import PopulationSpec

__all__ = ["Population", "category_counts"]

_NAME_SALT = 0x4E414D45  # keeps name draws apart from the agents' own draws


def category_counts(total: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Exact counts per category for `total` agents."""
    return dict(zip(shares, largest_remainder(total, list(shares.values())), strict=True))


def _dealt(total: int, counts: list[int], seed: int, salt: str) -> np.ndarray:
    """Category index of every agent: `counts[i]` agents get category i, in a seeded order."""
    order = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    return np.random.default_rng([seed, zlib.crc32(salt.encode())]).permutation(order)


class Population:
    """The profiles and agents of one run, any slice of which can be built on its own.

    Args:
        spec: the population part of the run spec.
        seed: the run seed.
    """

    def __init__(self, spec: PopulationSpec, seed: int) -> None:
        self.spec = spec
        self.seed = seed
        total = spec.total
        self._attributes = [
            (name, list(shares), _dealt(total, list(category_counts(total, shares).values()), seed, name))
            for name, shares in spec.attributes.items()
        ]
        kind_counts = largest_remainder(total, [k.share for k in spec.kinds])
        self._kind_of = _dealt(total, kind_counts, seed, "\0kinds")
        self._contexts = [
            AgentContext(seed, KINDS.get(k.kind).Params.model_validate(k.params)) for k in spec.kinds
        ]
        # Profiles with the same categories share one read-only mapping.
        self._mappings: dict[tuple[int, ...], Mapping[str, str]] = {}

    def __repr__(self) -> str:
        return f"Population(total={self.spec.total}, seed={self.seed})"

    def __len__(self) -> int:
        return self.spec.total

    def profile(self, agent_id: int) -> Profile:
        return self.profiles(range(agent_id, agent_id + 1))[0]

    def profiles(self, ids: range) -> list[Profile]:
        """The profiles of agents `ids` (a slice of 0..total), in id order."""
        if ids.step != 1 or ids.start < 0 or ids.stop > self.spec.total:
            raise IndexError(f"agents {ids} are not a slice of 0..{self.spec.total - 1}")
        window = slice(ids.start, ids.stop)
        columns = [dealt[window].tolist() for _, _, dealt in self._attributes]
        combos = zip(*columns, strict=True) if columns else repeat((), len(ids))
        labels = [k.label or k.kind for k in self.spec.kinds]
        kinds = self._kind_of[window].tolist()
        return [
            self._profile(agent_id, combo, labels[kind])
            for agent_id, combo, kind in zip(ids, combos, kinds, strict=True)
        ]

    def agents(self, ids: range) -> list[Agent]:
        """The agents `ids`, each of its kind, in id order."""
        classes = [KINDS.get(k.kind) for k in self.spec.kinds]
        kinds = self._kind_of[ids.start : ids.stop].tolist()
        return [
            classes[kind](profile, self._contexts[kind])
            for profile, kind in zip(self.profiles(ids), kinds, strict=True)
        ]

    def _profile(self, agent_id: int, combo: tuple[int, ...], kind: str) -> Profile:
        attributes = self._mappings.get(combo)
        if attributes is None:
            attributes = MappingProxyType(
                {name: cats[i] for (name, cats, _), i in zip(self._attributes, combo, strict=True)}
            )
            self._mappings[combo] = attributes
        name = self._name(agent_id, attributes)
        return Profile(agent_id, name, kind, attributes, self._background(name, kind, attributes))

    def _name(self, agent_id: int, attributes: Mapping[str, str]) -> str:
        draws = Draws(agent_key(self.seed ^ _NAME_SALT, agent_id))
        gender = attributes.get("gender", "").lower()
        if gender in ("female", "woman", "f"):
            given = draws.choice(names.FEMALE)
        elif gender in ("male", "man", "m"):
            given = draws.choice(names.MALE)
        else:
            given = draws.choice(names.FEMALE if draws.random() < 0.5 else names.MALE)
        return f"{given} {draws.choice(names.FAMILY)}"

    def _background(self, name: str, kind: str, attributes: Mapping[str, str]) -> str:
        if self.spec.background is not None:
            return self.spec.background.format(name=name, kind=kind, **attributes)
        if not attributes:
            return f"{name}."
        traits = "; ".join(f"{key}: {value}" for key, value in attributes.items())
        return f"{name}. {traits}."
