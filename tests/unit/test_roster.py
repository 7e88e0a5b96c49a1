"""A run's roster filters, sorts and pages its agents as a table of their profiles would: checked
against the profiles themselves, filtered and sorted in plain Python."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from agents.population import Population
from agents.spec import RunSpec
from backend.services.roster import SORTS, Roster, RunUnreadable, roster_of
from backend.store.agents import HostRange
from backend.store.models import Run
from tests.conftest import spec_data

TOTAL = 3_000
HOSTS = [
    HostRange(0, range(0, 1000), "node-a"),
    HostRange(1, range(1000, 2200), "node-b"),
    HostRange(2, range(2200, TOTAL), "node-a"),
]


@pytest.fixture(scope="module")
def spec() -> RunSpec:
    kinds = [
        *({"kind": "level_k", "share": 10, "params": {"k": k}} for k in range(3)),
        {"kind": "uniform", "share": 40, "label": "Zed"},
        {"kind": "adaptive", "share": 30},
    ]
    attributes = {"gender": {"male": 50, "female": 50}, "age": {"old": 30, "young": 70}}
    return RunSpec.parse(
        spec_data(
            **{"population.total": TOTAL, "population.kinds": kinds, "population.attributes": attributes}
        )
    )


def host_of(agent: int) -> HostRange:
    return next(h for h in HOSTS if agent in h.ids)


FILTERS = [
    {},
    {"kind": "level_k(k=1)"},
    {"kind": "Zed", "attributes": {"gender": "female"}},
    {"attributes": {"gender": "male", "age": "old"}},
    {"attributes": {"gender": "nobody"}},
    {"host": 1},
    {"node": "node-a", "kind": "adaptive(rate=0.5)"},
    {"name": "A"},
    {"name": "Anna "},
    {"name": "Zz"},
    {"failed": np.array([5, 17, 2999, 4000, -1])},
]


@pytest.mark.parametrize("filters", FILTERS)
@pytest.mark.parametrize("sort", SORTS)
@pytest.mark.parametrize("descending", [False, True])
def test_pages_are_the_profiles_filtered_and_sorted(spec, filters, sort, descending):
    roster = Roster(spec)
    everyone = Population(spec.population, spec.seed).profiles(range(TOTAL))
    failed = set(filters.get("failed", np.array([], dtype=np.int64)).tolist())

    def passes(p) -> bool:
        return (
            filters.get("kind", p.kind) == p.kind
            and all(p.attributes.get(k) == v for k, v in filters.get("attributes", {}).items())
            and filters.get("host", host_of(p.id).host) == host_of(p.id).host
            and filters.get("node", host_of(p.id).node) == host_of(p.id).node
            and p.name.startswith(filters.get("name", ""))
            and ("failed" not in filters or p.id in failed)
        )

    def key(p) -> object:
        return {"id": p.id, "name": p.name, "kind": p.kind, "host": host_of(p.id).host}[sort]

    matching = [p for p in everyone if passes(p)]
    # Sorted by the key (either way), then by id, ascending.
    expected = sorted(matching, key=lambda p: p.id)
    expected.sort(key=key, reverse=descending)
    if sort == "id":
        expected = sorted(matching, key=lambda p: p.id, reverse=descending)
    chosen = roster.select(HOSTS, **filters)
    for offset in (0, 40, len(expected) - 7):
        ids, count = roster.page(chosen, sort, descending, HOSTS, 25, max(offset, 0))
        assert count == len(expected)
        assert ids == [p.id for p in expected[max(offset, 0) : max(offset, 0) + 25]]


def test_views_are_the_profiles_where_their_hosts_are(spec):
    roster = Roster(spec)
    ids = [2999, 0, 1500]
    views = roster.views(ids, HOSTS, {1500: "Written by a model."})
    profiles = {p.id: p for p in Population(spec.population, spec.seed).profiles(range(TOTAL))}
    for view, agent in zip(views, ids, strict=True):
        profile = profiles[agent]
        assert (view.agent_id, view.name, view.kind, view.attributes) == (
            agent,
            profile.name,
            profile.kind,
            profile.attributes,
        )
        assert (view.host, view.node) == (host_of(agent).host, host_of(agent).node)
    assert views[0].background == profiles[2999].background
    assert views[2].background == "Written by a model."
    assert roster.views([3], [], {})[0].host is None  # not placed yet


def test_kinds_are_labels_and_matching_counts_them(spec):
    roster = Roster(spec)
    assert roster.labels == ["Zed", "adaptive(rate=0.5)", "level_k(k=0)", "level_k(k=1)", "level_k(k=2)"]
    everyone = Population(spec.population, spec.seed).profiles(range(TOTAL))
    for label in roster.labels:
        want = [p.id for p in everyone if p.kind == label]
        assert np.flatnonzero(roster.matching(kinds=[label])).tolist() == want
    assert not roster.matching(kinds=["no such kind"]).any()


async def test_a_run_whose_spec_no_longer_reads_is_said_so_not_a_crash():
    """A kind not installed in this process (a plugin of the worker's): a clear refusal (409)."""
    data = spec_data(**{"population.kinds": [{"kind": "not_installed_here", "share": 100}]})
    rt = SimpleNamespace(engine=SimpleNamespace(url="sqlite+aiosqlite:///roster.db"))
    with pytest.raises(RunUnreadable, match="run 5's agents cannot be shown here: its spec no longer reads"):
        await roster_of(rt, Run(id=5, spec=data))  # type: ignore[arg-type]


async def test_a_roster_is_kept_per_spec_as_written(spec):
    """The order of a spec's categories decides who its agents are: a spec whose keys come in
    another order is another roster."""
    rt = SimpleNamespace(engine=SimpleNamespace(url="sqlite+aiosqlite:///roster.db"))
    data = spec.model_dump(mode="json")
    first = await roster_of(rt, Run(id=6, spec=data))  # type: ignore[arg-type]
    assert await roster_of(rt, Run(id=6, spec=data)) is first  # type: ignore[arg-type]
    gender = data["population"]["attributes"]["gender"]
    data["population"]["attributes"]["gender"] = dict(reversed(list(gender.items())))
    other = await roster_of(rt, Run(id=6, spec=data))  # type: ignore[arg-type]
    assert other is not first
    assert other.views([0, 1, 2], [], {}) != first.views([0, 1, 2], [], {})
