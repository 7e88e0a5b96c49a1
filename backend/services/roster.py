"""A run's agents as its spec and seed make them: filtered, sorted and paged over arrays.

Profiles are not stored (`backend.store.agents`): a process rebuilds a run's population once and
keeps it for the next request (a few runs at a time), as arrays of a few bytes per agent: each
one's kind, category of each attribute and name (a key that sorts as names do). A page of a
million agents is then a few array operations, and its fifty profiles are built on their own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import ValidationError

from agents.population import Population
from agents.spec import RunSpec
from backend.runtime import Runtime
from backend.store import agents as stored
from backend.store.actions import failed_agents
from backend.store.agents import HostRange
from backend.store.models import Run

__all__ = [
    "SORTS",
    "AgentView",
    "Roster",
    "RunUnreadable",
    "Sort",
    "backgrounds_of",
    "failed_in",
    "hosts_of",
    "placed",
    "roster_of",
    "views",
]

Sort = Literal["id", "name", "kind", "host"]
SORTS: tuple[Sort, ...] = ("id", "name", "kind", "host")

# Rosters kept per process, by (database, run, spec): a million agents' take about 15 MB, and
# up to 40 MB more with the orders of every sort (4 bytes an agent each).
_KEPT = 3
_ROSTERS: OrderedDict[tuple[str, int, str], asyncio.Future[Roster]] = OrderedDict()


class RunUnreadable(RuntimeError):
    """The run's agents cannot be rebuilt here: its stored spec no longer reads (a kind that is
    not installed in this process, a parameter an upgrade refuses)."""


@dataclass(frozen=True, slots=True)
class AgentView:
    """An agent as the pages, the API and the exports show it: its profile and where it is."""

    agent_id: int
    name: str
    kind: str
    attributes: Mapping[str, str]
    background: str
    host: int | None
    node: str | None


class Roster:
    """The agents of one run, rebuilt from its spec: `select`, `order` and `views` of them."""

    def __init__(self, spec: RunSpec) -> None:
        self.spec = spec
        self.population = Population(spec.population, spec.seed)
        # The kinds' labels in order, so that agents sort by kind as their codes do.
        self.labels = sorted(self.population.labels)
        at = np.array([self.labels.index(label) for label in self.population.labels], dtype=np.int16)
        self.kinds = at[self.population.kind_codes]
        self._names: np.ndarray | None = None
        self._orders: dict[tuple[Sort, bool, tuple[HostRange, ...]], np.ndarray] = {}
        # Pages are made in threads: one fills the caches at a time (and they are built once).
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Roster(agents={len(self)}, seed={self.spec.seed})"

    def __len__(self) -> int:
        return self.spec.population.total

    @property
    def names(self) -> np.ndarray:
        with self._lock:
            if self._names is None:
                self._names = self.population.name_keys()
            return self._names

    def matching(
        self, *, kinds: Collection[str] | None = None, attributes: Mapping[str, str] | None = None
    ) -> np.ndarray:
        """Which agents are of one of `kinds` (labels) and have every attribute of `attributes`."""
        every = range(len(self))
        found = self.population.matches(attributes, every) if attributes else np.ones(len(self), dtype=bool)
        if kinds is not None:
            codes = [self.labels.index(k) for k in kinds if k in self.labels]
            found &= self.kinds == codes[0] if len(codes) == 1 else np.isin(self.kinds, codes)
        return found

    def select(
        self,
        hosts: Sequence[HostRange],
        *,
        kind: str | None = None,
        attributes: Mapping[str, str] | None = None,
        host: int | None = None,
        node: str | None = None,
        name: str | None = None,
        failed: np.ndarray | None = None,
    ) -> np.ndarray:
        """Which agents pass every filter given: of `kind`, with `attributes`, on `host` or
        `node`, named starting with `name`, among the `failed` ids."""
        found = self.matching(kinds=None if kind is None else [kind], attributes=attributes)
        if host is not None or node is not None:
            placed = np.zeros(len(self), dtype=bool)
            for h in hosts:
                if (host is None or h.host == host) and (node is None or h.node == node):
                    placed[h.ids.start : h.ids.stop] = True
            found &= placed
        if name:
            span = self.population.name_span(name)
            found &= (self.names >= span.start) & (self.names < span.stop)
        if failed is not None:
            named = np.zeros(len(self), dtype=bool)
            named[failed[(failed >= 0) & (failed < len(self))]] = True
            found &= named
        return found

    def order(self, sort: Sort, descending: bool, hosts: Sequence[HostRange]) -> np.ndarray:
        """Every agent's id, sorted by `sort` (then by id, ascending either way); kept for the
        next page (but ids in order, which are made at once)."""
        if sort == "id":
            return np.arange(len(self), dtype=np.int32)[:: -1 if descending else 1]
        key = (sort, descending, tuple(hosts) if sort == "host" else ())
        if (order := self._orders.get(key)) is not None:
            return order
        values = self._key(sort, hosts)
        with self._lock:
            order = self._orders.get(key)
            if order is None:
                # A stable sort over ids in order: equal keys keep ascending ids.
                order = np.argsort(-values if descending else values, kind="stable").astype(np.int32)
                if sort == "host":  # the hosts moved: the order of the old ones goes
                    self._orders = {k: v for k, v in self._orders.items() if k[0] != "host"}
                self._orders[key] = order
            return order

    def _key(self, sort: Sort, hosts: Sequence[HostRange], ids: np.ndarray | None = None) -> np.ndarray:
        """What agents (`ids`, or all) sort by: their name keys, kinds or hosts."""
        if sort == "name":
            by = self.names
        elif sort == "kind":
            by = self.kinds
        else:
            by = _hosts(hosts, len(self))
        return (by if ids is None else by[ids]).astype(np.int64)

    def page(
        self,
        chosen: np.ndarray,
        sort: Sort,
        descending: bool,
        hosts: Sequence[HostRange],
        limit: int,
        offset: int,
    ) -> tuple[list[int], int]:
        """The ids of page (`limit` from `offset`) of the `chosen` agents, and how many there are.

        Every agent: a slice of the sorted ids (kept). Some: the page is picked out of theirs
        alone, by a partition (linear in how many match), not by sorting them all."""
        count = int(np.count_nonzero(chosen))
        end = min(offset + limit, count)
        if offset >= end:
            return [], count
        if count == len(self):
            return self.order(sort, descending, hosts)[offset:end].tolist(), count
        ids = np.flatnonzero(chosen)
        if sort == "id":
            return (ids[::-1] if descending else ids)[offset:end].tolist(), count
        key = self._key(sort, hosts, ids)
        if descending:
            key = key.max() - key
        ranked = key * len(self) + ids  # by key, then by id: below 2**63 for any run
        # The ranks offset..end-1 land between the two partition points, in no order: sort those.
        page = np.argpartition(ranked, (offset, end - 1))[offset:end]
        return ids[page[np.argsort(ranked[page])]].tolist(), count

    def views(
        self, ids: Sequence[int], hosts: Sequence[HostRange], written: Mapping[int, str]
    ) -> list[AgentView]:
        """The agents `ids`, in that order, with the backgrounds `written` for them."""
        views = []
        for profile in self.population.profiles_of(np.asarray(ids, dtype=np.int64)):
            placed = next((h for h in hosts if profile.id in h.ids), None)
            views.append(
                AgentView(
                    profile.id,
                    profile.name,
                    profile.kind,
                    profile.attributes,
                    written.get(profile.id, profile.background),
                    placed.host if placed is not None else None,
                    placed.node if placed is not None else None,
                )
            )
        return views


def _hosts(hosts: Sequence[HostRange], total: int) -> np.ndarray:
    """Every agent's host (after every host, before the run is placed)."""
    of = np.full(total, len(hosts) and max(h.host for h in hosts) + 1, dtype=np.int64)
    for h in hosts:
        of[h.ids.start : h.ids.stop] = h.host
    return of


async def roster_of(rt: Runtime, run: Run) -> Roster:
    """The run's roster, rebuilt (in a thread) unless this process kept it."""
    # The spec as written, keys in order: their order decides who the agents are.
    digest = hashlib.sha256(json.dumps(run.spec).encode()).hexdigest()
    key = (str(rt.engine.url), run.id, digest)
    kept = _ROSTERS.get(key)
    if kept is None:
        try:
            spec = RunSpec.stored(run.spec)
        except ValidationError as e:
            raise RunUnreadable(
                f"run {run.id}'s agents cannot be shown here: its spec no longer reads "
                f"({e.errors()[0]['msg']})"
            ) from None
        # A future, so that the requests that come while it is being built wait for this one.
        kept = asyncio.ensure_future(asyncio.to_thread(Roster, spec))
        _ROSTERS[key] = kept
        while len(_ROSTERS) > _KEPT:
            _ROSTERS.popitem(last=False)
    _ROSTERS.move_to_end(key)
    try:
        return await asyncio.shield(kept)
    except Exception:
        if _ROSTERS.get(key) is kept:
            del _ROSTERS[key]
        raise


async def backgrounds_of(rt: Runtime, run_id: int, roster: Roster, ids: Sequence[int]) -> dict[int, str]:
    """The backgrounds written for agents `ids` of the run (none unless it has personas)."""
    if roster.spec.population.persona is None:
        return {}
    async with rt.sessions() as session:
        return await stored.backgrounds(session, run_id=run_id, ids=ids)


async def views(
    rt: Runtime, run_id: int, roster: Roster, ids: Sequence[int], hosts: Sequence[HostRange]
) -> list[AgentView]:
    """The agents `ids` of the run, in that order, with the backgrounds written for them."""
    return roster.views(ids, hosts, await backgrounds_of(rt, run_id, roster, ids))


async def failed_in(rt: Runtime, run_id: int, round: int) -> np.ndarray:
    """The ids of the agents whose action failed in `round`."""
    async with rt.sessions() as session:
        return np.array((await session.scalars(failed_agents(run_id, round))).all(), dtype=np.int64)


async def placed(rt: Runtime, run: Run) -> tuple[Roster, list[HostRange]] | None:
    """The run's roster and its hosts, once it is placed; None before (a queued run has no
    agents to show, and its population is not built for nothing)."""
    hosts = await hosts_of(rt, run.id)
    return (await roster_of(rt, run), hosts) if hosts else None


async def hosts_of(rt: Runtime, run_id: int) -> list[HostRange]:
    async with rt.sessions() as session:
        return await stored.hosts(session, run_id=run_id)
