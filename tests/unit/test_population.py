from collections import Counter

import pytest

from agents.kinds.guessing import Adaptive, LevelK, UniformRandom
from agents.population import Population, category_counts


def test_category_counts_are_exact_for_any_total():
    assert category_counts(7, {"a": 50, "b": 50}) == {"a": 4, "b": 3}
    assert category_counts(1000, {"x": 33.3, "y": 33.3, "z": 33.4}) == {"x": 333, "y": 333, "z": 334}


def test_every_attribute_has_exact_counts(make_spec):
    spec = make_spec(**{"population.total": 999})
    profiles = Population(spec.population, spec.seed).profiles(range(999))
    assert Counter(p.attributes["gender"] for p in profiles) == {"female": 500, "male": 499}
    assert Counter(p.attributes["education"] for p in profiles) == {"school": 599, "university": 400}
    # quotas 199.8, 299.7, 199.8, 199.8, 99.9: the four units left go to .9 and the three .8s
    kinds = Counter(p.kind for p in profiles)
    assert kinds == {
        "level_k(k=0)": 200,
        "level_k(k=1)": 299,
        "level_k(k=2)": 200,
        "adaptive(rate=0.5)": 200,
        "uniform": 100,
    }


def test_agents_are_of_their_profile_kind(make_spec):
    spec = make_spec()
    agents = Population(spec.population, spec.seed).agents(range(1000))
    by_label = {a.profile.kind: type(a) for a in agents}
    assert by_label["level_k(k=2)"] is LevelK
    assert by_label["adaptive(rate=0.5)"] is Adaptive
    assert by_label["uniform"] is UniformRandom
    assert {a.context.params.k for a in agents if a.profile.kind == "level_k(k=1)"} == {1}


def test_the_seed_decides_everything_and_slices_agree(make_spec):
    spec = make_spec()
    whole = Population(spec.population, spec.seed).profiles(range(1000))
    again = Population(spec.population, spec.seed)
    assert again.profiles(range(400, 700)) == whole[400:700]
    assert again.profile(999) == whole[999]
    other = Population(spec.population, spec.seed + 1).profiles(range(1000))
    assert [p.attributes["gender"] for p in other] != [p.attributes["gender"] for p in whole]


def test_order_is_shuffled_not_blocked(make_spec):
    spec = make_spec()
    first_half = Population(spec.population, spec.seed).profiles(range(500))
    assert 200 < sum(p.attributes["gender"] == "female" for p in first_half) < 300


def test_backgrounds_read_the_attributes(make_spec):
    spec = make_spec(**{"population.background": "{name} ({gender}) went to {education}; a {kind}."})
    p = Population(spec.population, spec.seed).profile(3)
    assert (
        p.background
        == f"{p.name} ({p.attributes['gender']}) went to {p.attributes['education']}; a {p.kind}."
    )
    default = Population(make_spec().population, spec.seed).profile(3)
    assert default.background.startswith(default.name)
    assert f"gender: {default.attributes['gender']}" in default.background


def test_names_follow_gender(make_spec):
    from agents import names

    spec = make_spec()
    for p in Population(spec.population, spec.seed).profiles(range(200)):
        given = p.name.rsplit(" ", 1)[0]
        assert given in (names.FEMALE if p.attributes["gender"] == "female" else names.MALE)


@pytest.mark.parametrize("attributes", [None, {}], ids=["by gender", "no gender"])
def test_ten_thousand_agents_have_distinct_names_from_their_seed(make_spec, attributes):
    changes = {"population.total": 10_000}
    if attributes is not None:
        changes["population.attributes"] = attributes
    spec = make_spec(**changes)
    names = [p.name for p in Population(spec.population, spec.seed).profiles(range(10_000))]
    assert len(set(names)) >= 9_900  # 2,256 once: 14 agents were called "Noah Yilmaz"
    again = Population(spec.population, spec.seed)
    assert [p.name for p in again.profiles(range(6_000, 6_100))] == names[6_000:6_100]
    other = Population(spec.population, spec.seed + 1).profiles(range(100))
    assert [p.name for p in other] != names[:100]


def test_names_repeat_evenly_once_every_pair_is_taken(make_spec):
    """More agents of one gender than pairs of names: each pair is taken about as often as another."""
    from agents import names

    pairs = len(names.FEMALE) * len(names.FAMILY)
    total = 2 * pairs + 10
    spec = make_spec(**{"population.total": total, "population.attributes": {"gender": {"female": 100}}})
    counts = Counter(p.name for p in Population(spec.population, spec.seed).profiles(range(total)))
    assert len(counts) == pairs
    assert max(counts.values()) == 3


def test_identical_attribute_combinations_share_one_mapping(make_spec):
    spec = make_spec()
    profiles = Population(spec.population, spec.seed).profiles(range(1000))
    assert len({id(p.attributes) for p in profiles}) == 4
    with pytest.raises(TypeError):
        profiles[0].attributes["gender"] = "x"  # type: ignore[index]


def test_a_population_without_attributes(make_spec):
    spec = make_spec(**{"population.attributes": {}})
    p = Population(spec.population, spec.seed).profile(0)
    assert dict(p.attributes) == {}
    assert p.background == f"{p.name}."


def test_slices_outside_the_population_are_refused(make_spec):
    spec = make_spec()
    with pytest.raises(IndexError, match="not a slice"):
        Population(spec.population, spec.seed).profiles(range(990, 1001))


def test_name_keys_worked_out_a_slice_at_a_time_sort_as_the_names(make_spec, monkeypatch):
    """Name keys are worked out a million agents at a time (the pairs of 100,000,000 at once took
    3 GB): slices of 7 give the keys of one piece, and agents sort by them as by their names."""
    from agents import population

    spec = make_spec(**{"population.total": 1000})
    whole = Population(spec.population, spec.seed).name_keys()
    monkeypatch.setattr(population, "_KEYS_AT_ONCE", 7)
    sliced = Population(spec.population, spec.seed).name_keys()
    assert sliced.tolist() == whole.tolist()
    names = [p.name for p in Population(spec.population, spec.seed).profiles(range(1000))]
    assert [names[i] for i in sliced.argsort(kind="stable")] == sorted(names)
