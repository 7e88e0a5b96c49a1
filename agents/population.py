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
# Pools of given names: a gender's, or both for an agent whose gender has neither (or no gender).
_POOLS = (names.FEMALE, names.MALE, names.FEMALE + names.MALE)
_POOL_OF_GENDER = {"female": 0, "woman": 0, "male": 1, "man": 1}


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
        self._name_draws: tuple[np.ndarray, np.ndarray] | None = None
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
        names = self._names(ids)
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

    def _names(self, ids: range) -> list[str]:
        """A given name (by gender, when the population has one) and a family name per agent.

        The agents of each pool of given names are numbered in id order, and their numbers go
        through a permutation of the pool's (given, family) pairs seeded from the run: names are
        drawn without replacement, so no two agents share one until every pair is taken.
        """
        pools, ranks = self._name_ranks()
        window = slice(ids.start, ids.stop)
        pools_here, ranks_here = pools[window], ranks[window]
        pairs = np.zeros(len(ids), dtype=np.uint64)
        for pool, given in enumerate(_POOLS):
            mine = pools_here == pool
            if mine.any():
                size = len(given) * len(names.FAMILY)
                key = mix(self._name_key ^ pool)
                pairs[mine] = _permuted(ranks_here[mine].astype(np.uint64), size, key)
        family = len(names.FAMILY)
        return [
            f"{_POOLS[pool][pair // family]} {names.FAMILY[pair % family]}"
            for pool, pair in zip(pools_here.tolist(), pairs.tolist(), strict=True)
        ]

    def _name_ranks(self) -> tuple[np.ndarray, np.ndarray]:
        """Each agent's pool of given names, and its number among the agents of that pool."""
        if self._name_draws is None:
            gender = next(((cats, dealt) for name, cats, dealt in self._attributes if name == "gender"), None)
            if gender is None:
                pools = np.full(self.spec.total, len(_POOLS) - 1, dtype=np.int8)
            else:
                cats, dealt = gender
                pool_of = [_POOL_OF_GENDER.get(c.lower(), len(_POOLS) - 1) for c in cats]
                pools = np.asarray(pool_of, dtype=np.int8)[dealt]
            ranks = np.zeros(self.spec.total, dtype=np.int64)
            for pool in range(len(_POOLS)):
                mine = pools == pool
                ranks[mine] = np.arange(int(mine.sum()))
            self._name_draws = (pools, ranks)
        return self._name_draws

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


def _permuted(ranks: np.ndarray, size: int, key: int) -> np.ndarray:
    """Where a seeded permutation of range(size) sends each rank; rank `size` and on start again
    on another permutation, so every value is taken once before any is taken a second time.

    A four-round Feistel network over the smallest even number of bits that covers `size`, with
    values past `size` sent through again until they fall inside (cycle walking).
    """
    half = max(1, ((size - 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    cycles = ranks // np.uint64(size)
    keys = mix_array(cycles ^ np.uint64(key))
    values = ranks % np.uint64(size)
    todo = np.ones(len(values), dtype=bool)
    while todo.any():
        left, right, k = values[todo] >> np.uint64(half), values[todo] & mask, keys[todo]
        for step in range(4):
            left, right = right, left ^ (mix_array(right ^ k ^ np.uint64(step)) & mask)
        values[todo] = (left << np.uint64(half)) | right
        todo &= values >= np.uint64(size)
    return values


def _braced(text: str) -> str:
    """`text` made literal inside a format string."""
    return text.replace("{", "{{").replace("}", "}}")
