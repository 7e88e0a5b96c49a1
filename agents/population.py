"""Background generation, first half: a population spec becomes exactly `total` diverse profiles.

Each attribute's categories are counted exactly (largest-remainder rounding of the percentages)
and dealt out by a permutation seeded from (run seed, attribute), and so is the mix of agent kinds.
Any process can rebuild any slice of the population from the spec and the seed alone, so hosts
generate their own agents instead of receiving millions of profiles over the network.
"""

from __future__ import annotations

import bisect
import functools
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from agents import names
from agents.apportion import largest_remainder
from agents.columnar import Columns, columns_of
from agents.core import Agent, AgentContext, Profile
from agents.kinds import KINDS
from agents.llm import LLM
from agents.rng import mix, mix_array
from agents.spec import PopulationSpec

__all__ = ["Hosted", "Population", "category_counts"]

_NAME_SALT = 0x4E414D45  # keeps name draws apart from the agents' own draws
# Pools of given names: a gender's, or both for an agent whose gender has neither (or no gender).
_POOLS = (names.FEMALE, names.MALE, names.FEMALE + names.MALE)
_POOL_OF_GENDER = {"female": 0, "woman": 0, "male": 1, "man": 1}
_KEYS_AT_ONCE = 1_000_000  # agents whose name keys are worked out together


def category_counts(total: int, shares: Mapping[str, float]) -> dict[str, int]:
    """Exact counts per category for `total` agents."""
    return dict(zip(shares, largest_remainder(total, list(shares.values())), strict=True))


@dataclass(slots=True)
class Hosted:
    """A host's agents: `agents` as objects at `offsets` (positions among the host's ids), and
    `groups` of columns, each (index of its kind in the spec, its columns, their offsets)."""

    agents: list[Agent] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    groups: list[tuple[int, Columns, np.ndarray]] = field(default_factory=list)


class _Profiles:
    """`ProfileColumns` of some agents of a population: read from its columns when asked."""

    __slots__ = ("_ids", "_population")

    def __init__(self, population: Population, ids: np.ndarray) -> None:
        self._population = population
        self._ids = ids

    def attribute(self, name: str) -> tuple[list[str], np.ndarray]:
        categories, dealt = self._population.attribute(name)
        return categories, dealt[self._ids]

    def profiles(self, positions: np.ndarray) -> list[Profile]:
        return self._population.profiles_of(self._ids[positions])


def _dealt(total: int, counts: list[int], seed: int, salt: str) -> np.ndarray:
    """Category index of every agent: `counts[i]` agents get category i, in a seeded order."""
    # The smallest integers that hold the categories: a shuffle of bytes is quicker and smaller
    # (a host keeps these for the whole population), and it moves them exactly as one of int32.
    order = np.repeat(np.arange(len(counts), dtype=np.min_scalar_type(-len(counts))), counts)
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
        self._llm = llm
        self._name_key = mix(seed ^ _NAME_SALT)
        self._name_draws: tuple[np.ndarray, np.ndarray] | None = None
        # Profiles with the same categories share one read-only mapping.
        self._mappings: dict[tuple[int, ...], Mapping[str, str]] = {}
        self._templates: dict[tuple[tuple[int, ...], int], str] = {}

    def __repr__(self) -> str:
        return f"Population(total={self.spec.total}, seed={self.seed})"

    def __len__(self) -> int:
        return self.spec.total

    @functools.cached_property
    def _contexts(self) -> list[AgentContext]:
        # Only agents need their kinds: profiles are read where a plugin kind may not be installed.
        return [
            AgentContext(self.seed, KINDS.get(k.kind).Params.model_validate(k.params), self._llm)
            for k in self.spec.kinds
        ]

    @property
    def labels(self) -> list[str]:
        """The kinds' labels, as profiles name them (an agent's kind code indexes this)."""
        return [k.label or k.kind for k in self.spec.kinds]

    @property
    def kind_codes(self) -> np.ndarray:
        """Every agent's kind: an index into the spec's kinds (read-only)."""
        return _frozen(self._kind_of)

    def attribute(self, name: str) -> tuple[list[str], np.ndarray]:
        """An attribute's categories and every agent's category among them (read-only; -1 for
        every agent when the population has no such attribute)."""
        for attribute, categories, dealt in self._attributes:
            if attribute == name:
                return categories, _frozen(dealt)
        return [], np.full(self.spec.total, -1, dtype=np.int8)

    def name_keys(self) -> np.ndarray:
        """Every agent's name as its rank among every name there can be: agents sort by name as
        their keys sort, and the names starting with a text are a range of keys (`name_span`)."""
        total = self.spec.total
        keys = np.empty(total, dtype=np.int32)
        # A slice at a time: the pairs of a whole population at once took some 30 bytes an agent
        # beside the keys' 4 (3 GB for the 100,000,000 a run may have).
        for start in range(0, total, _KEYS_AT_ONCE):
            pools, pairs = self._name_pairs(np.arange(start, min(start + _KEYS_AT_ONCE, total)))
            part = keys[start : start + len(pools)]
            for pool, ranked in enumerate(_ranked_names()[1]):
                mine = pools == pool
                part[mine] = ranked[pairs[mine].astype(np.int64)]
        return keys

    @staticmethod
    def name_span(prefix: str) -> range:
        """The name keys (`name_keys`) of the names that start with `prefix`."""
        every = _ranked_names()[0]
        return range(bisect.bisect_left(every, prefix), bisect.bisect_left(every, prefix + "\U0010ffff"))

    def profile(self, agent_id: int) -> Profile:
        return self.profiles(range(agent_id, agent_id + 1))[0]

    def profiles(self, ids: range) -> list[Profile]:
        """The profiles of agents `ids` (a slice of 0..total), in id order."""
        if ids.step != 1 or ids.start < 0 or ids.stop > self.spec.total:
            raise IndexError(f"agents {ids} are not a slice of 0..{self.spec.total - 1}")
        return self.profiles_of(np.arange(ids.start, ids.stop, dtype=np.int64))

    def profiles_of(self, at: np.ndarray) -> list[Profile]:
        """The profiles of the agents whose ids are `at`, in that order."""
        columns = [dealt[at].tolist() for _, _, dealt in self._attributes]
        combos = list(zip(*columns, strict=True)) if columns else [()] * len(at)
        attributes = [self._mapping(combo) for combo in combos]
        names = self._names(at)
        labels = [k.label or k.kind for k in self.spec.kinds]
        kinds = self._kind_of[at].tolist()
        return [
            Profile(agent_id, name, labels[kind], attrs, self._template(combo, kind).format(name=name))
            for agent_id, name, kind, combo, attrs in zip(
                at.tolist(), names, kinds, combos, attributes, strict=True
            )
        ]

    def agents(self, ids: range) -> list[Agent]:
        """The agents `ids`, each of its kind, as objects, in id order."""
        classes = [KINDS.get(k.kind) for k in self.spec.kinds]
        kinds = self._kind_of[ids.start : ids.stop].tolist()
        return [
            classes[kind](profile, self._contexts[kind])
            for profile, kind in zip(self.profiles(ids), kinds, strict=True)
        ]

    def hosted(self, ids: range) -> Hosted:
        """The agents `ids` as a host holds them: the kinds that have columns (`Agent.columnar`)
        as one `Columns` each, the others as objects. With personas every kind is objects: a
        written persona is each agent's own background."""
        classes = [KINDS.get(k.kind) for k in self.spec.kinds]
        kinds = self._kind_of[ids.start : ids.stop]
        hosted = Hosted()
        objects = np.zeros(len(ids), dtype=bool)
        for index, cls in enumerate(classes):
            offsets = np.flatnonzero(kinds == index)
            if not offsets.size:
                continue
            context = self._contexts[index]
            columnar = columns_of(cls, context.params, self.spec.persona is not None)
            if columnar is None:
                objects[offsets] = True
            else:
                agent_ids = offsets + ids.start
                columns = columnar(agent_ids, context, _Profiles(self, agent_ids))
                hosted.groups.append((index, columns, offsets))
        at = np.flatnonzero(objects)
        hosted.offsets = at.tolist()
        hosted.agents = [
            classes[kind](profile, self._contexts[kind])
            for profile, kind in zip(self.profiles_of(at + ids.start), kinds[at].tolist(), strict=True)
        ]
        return hosted

    def matches(self, where: Mapping[str, str] | None, ids: range) -> np.ndarray:
        """Which agents of `ids` have every attribute of `where` (all of them when None)."""
        found = np.ones(len(ids), dtype=bool)
        for name, value in (where or {}).items():
            attribute = next(((cats, dealt) for n, cats, dealt in self._attributes if n == name), None)
            if attribute is None or value not in attribute[0]:
                return np.zeros(len(ids), dtype=bool)
            found &= attribute[1][ids.start : ids.stop] == attribute[0].index(value)
        return found

    def _mapping(self, combo: tuple[int, ...]) -> Mapping[str, str]:
        attributes = self._mappings.get(combo)
        if attributes is None:
            attributes = MappingProxyType(
                {name: cats[i] for (name, cats, _), i in zip(self._attributes, combo, strict=True)}
            )
            self._mappings[combo] = attributes
        return attributes

    def _names(self, at: np.ndarray) -> list[str]:
        """A given name (by gender, when the population has one) and a family name per agent."""
        if not len(at):
            return []
        pools, pairs = self._name_pairs(at)
        family = len(names.FAMILY)
        return [
            f"{_POOLS[pool][pair // family]} {names.FAMILY[pair % family]}"
            for pool, pair in zip(pools.tolist(), pairs.tolist(), strict=True)
        ]

    def _name_pairs(self, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The pool of given names of the agents whose ids are `at`, and their (given, family)
        pair in it (given × families + family).

        The agents of each pool are numbered in id order, and their numbers go through a
        permutation of the pool's pairs seeded from the run: names are drawn without
        replacement, so no two agents share one until every pair is taken.
        """
        pools, ranks = self._name_ranks()
        pools_here, ranks_here = pools[at], ranks[at]
        pairs = np.zeros(len(at), dtype=np.uint64)
        for pool, given in enumerate(_POOLS):
            mine = pools_here == pool
            if mine.any():
                size = len(given) * len(names.FAMILY)
                pairs[mine] = _permuted(ranks_here[mine].astype(np.uint64), size, mix(self._name_key ^ pool))
        return pools_here, pairs

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


def _frozen(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


@functools.cache
def _ranked_names() -> tuple[list[str], list[np.ndarray]]:
    """Every name there can be, sorted; and for each pool of given names, the rank of each of its
    (given, family) pairs in that list."""
    every = sorted({f"{given} {family}" for pool in _POOLS for given in pool for family in names.FAMILY})
    rank = {name: i for i, name in enumerate(every)}
    keys = [
        np.array([rank[f"{given} {family}"] for given in pool for family in names.FAMILY], dtype=np.int32)
        for pool in _POOLS
    ]
    return every, keys


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
