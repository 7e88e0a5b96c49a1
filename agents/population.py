"""Background generation, first half: a population spec becomes exactly `total` diverse profiles.

Each attribute's categories are counted exactly (largest-remainder rounding of the percentages)
and dealt out by a permutation seeded from (run seed, attribute), and so is the mix of agent kinds.
Any process can rebuild any slice of the population from the spec and the seed alone, so hosts
generate their own agents instead of receiving millions of profiles over the network.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from agents import names
from agents.apportion import largest_remainder
from agents.core import Agent, AgentContext, Profile
from agents.kinds import KINDS
from agents.llm import LLM
from agents.rng import mix, mix_array
from agents.spec import PopulationSpec

__all__ = ["Population", "category_counts"]

_NAME_SALT = 0x4E414D45  # keeps name draws apart from the agents' own draws
_GIVEN_NAMES = {"female": names.FEMALE, "woman": names.FEMALE, "male": names.MALE, "man": names.MALE}


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
        llm: the run's language models in this process, for the kinds that use them.
    """

    def __init__(self, spec: PopulationSpec, seed: int, llm: LLM | None = None) -> None:
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
            AgentContext(seed, KINDS.get(k.kind).Params.model_validate(k.params), llm) for k in spec.kinds
        ]
        self._name_key = mix(seed ^ _NAME_SALT)
        # Profiles with the same categories share one read-only mapping.
        self._mappings: dict[tuple[int, ...], Mapping[str, str]] = {}
        self._templates: dict[tuple[tuple[int, ...], int], str] = {}

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
        combos = list(zip(*columns, strict=True)) if columns else [()] * len(ids)
        attributes = [self._mapping(combo) for combo in combos]
        names = self._names(ids, [a.get("gender", "") for a in attributes])
        labels = [k.label or k.kind for k in self.spec.kinds]
        kinds = self._kind_of[window].tolist()
        return [
            Profile(agent_id, name, labels[kind], attrs, self._template(combo, kind).format(name=name))
            for agent_id, name, kind, combo, attrs in zip(ids, names, kinds, combos, attributes, strict=True)
        ]

    def agents(self, ids: range) -> list[Agent]:
        """The agents `ids`, each of its kind, in id order."""
        classes = [KINDS.get(k.kind) for k in self.spec.kinds]
        kinds = self._kind_of[ids.start : ids.stop].tolist()
        return [
            classes[kind](profile, self._contexts[kind])
            for profile, kind in zip(self.profiles(ids), kinds, strict=True)
        ]

    def _mapping(self, combo: tuple[int, ...]) -> Mapping[str, str]:
        attributes = self._mappings.get(combo)
        if attributes is None:
            attributes = MappingProxyType(
                {name: cats[i] for (name, cats, _), i in zip(self._attributes, combo, strict=True)}
            )
            self._mappings[combo] = attributes
        return attributes

    def _names(self, ids: range, genders: list[str]) -> list[str]:
        """A given name (by gender, when the population has one) and a family name per agent,
        drawn from hashes of (seed, agent id), a whole slice at a time."""
        draws = mix_array(np.arange(ids.start, ids.stop, dtype=np.uint64) ^ np.uint64(self._name_key))
        family = (mix_array(draws) % np.uint64(len(names.FAMILY))).tolist()
        result = []
        for draw, surname, gender in zip(draws.tolist(), family, genders, strict=True):
            pool = _GIVEN_NAMES.get(gender.lower()) or (names.FEMALE, names.MALE)[draw >> 63]
            result.append(f"{pool[draw % len(pool)]} {names.FAMILY[surname]}")
        return result

    def _template(self, combo: tuple[int, ...], kind: int) -> str:
        """The background of every agent with these categories and kind, but for `{name}`."""
        template = self._templates.get((combo, kind))
        if template is None:
            attributes = {_braced(k): _braced(v) for k, v in self._mapping(combo).items()}
            label = _braced(self.spec.kinds[kind].label or "")
            if self.spec.background is not None:
                template = self.spec.background.format(name="{name}", kind=label, **attributes)
            elif attributes:
                template = "{name}. " + "; ".join(f"{k}: {v}" for k, v in attributes.items()) + "."
            else:
                template = "{name}."
            self._templates[(combo, kind)] = template
        return template


def _braced(text: str) -> str:
    """`text` made literal inside a format string."""
    return text.replace("{", "{{").replace("}", "}}")
