"""Experiment specs: factors crossed and zipped, replicate seeds, errors naming the field; and the
comparison's statistics, checked by hand."""

import math

import pytest

from agents.experiment import ExperimentError, ExperimentSpec, load_experiment, replicate_seed
from backend.services.comparison import band, effect, t_quantile
from backend.services.experiments import _effects
from backend.store.models import Run
from tests.conftest import spec_data


def parse(**fields) -> ExperimentSpec:
    return ExperimentSpec.parse({"base": spec_data(), **fields})


def problems(**fields) -> list[str]:
    with pytest.raises(ExperimentError) as e:
        parse(**fields)
    return e.value.problems


def test_vary_crosses_its_factors_and_zip_moves_paths_together():
    spec = parse(
        vary={"scenario.params.ratio": ["2/3", "1/2"], "rounds": [2, 4, 6]},
        zip=[{"population.total": [100, 200], "name": ["small", "large"]}],
    )
    cells = spec.cells()
    assert len(cells) == 2 * 3 * 2
    assert cells[0].values == {
        "scenario.params.ratio": "2/3",
        "rounds": 2,
        "population.total": 100,
        "name": "small",
    }
    assert cells[1].values["population.total"] == 200
    assert cells[1].values["name"] == "large"  # zipped: never "small" with 200
    assert {(c.values["population.total"], c.values["name"]) for c in cells} == {
        (100, "small"),
        (200, "large"),
    }
    planned = spec.plan()
    assert [p.spec.rounds for p in planned[:6:2]] == [2, 4, 6]
    assert planned[-1].spec.scenario.params["ratio"] == "1/2"


def test_replicates_get_derived_seeds_the_same_in_every_cell():
    spec = parse(vary={"rounds": [1, 2]}, replicates=3, seed=7)
    seeds = [(p.cell.index, p.replicate, p.spec.seed) for p in spec.plan()]
    assert [s for c, _, s in seeds if c == 0] == [s for c, _, s in seeds if c == 1]
    assert len({s for _, _, s in seeds}) == 3
    again = parse(vary={"rounds": [1, 2]}, replicates=3, seed=7).plan()
    assert [(p.cell.index, p.replicate, p.spec.seed) for p in again] == seeds  # reproducible
    assert [s for _, _, s in seeds[:3]] == [replicate_seed(7, r) for r in range(3)]
    assert all(0 <= s < 2**63 for _, _, s in seeds)
    other = [p.spec.seed for p in parse(vary={"rounds": [1, 2]}, replicates=3, seed=8).plan()]
    assert set(other).isdisjoint(s for _, _, s in seeds)
    # A varied seed is each cell's own base seed.
    varied = parse(vary={"seed": [1, 2]}).plan()
    assert [p.spec.seed for p in varied] == [replicate_seed(1, 0), replicate_seed(2, 0)]


def test_a_label_made_of_parameters_follows_the_parameters_a_cell_sets():
    spec = parse(vary={"population.kinds.3.params.rate": [0.1, 0.9]})
    labels = [p.spec.population.kinds[3].label for p in spec.plan()]
    assert labels == ["adaptive(rate=0.1)", "adaptive(rate=0.9)"]


def test_errors_name_the_factor_or_the_base_field():
    assert problems(vary={"scenario.params.ratio": ["2/3", "x"]}) == [
        "vary.scenario.params.ratio: x: Input is not a valid fraction"
    ]
    assert problems(vary={"population.kinds.9.share": [1]}) == [
        "vary.population.kinds.9.share: the base spec's population.kinds has no item 9"
    ]
    assert problems(vary={"rounds.x": [1]}) == [
        "vary.rounds.x: the base spec's rounds is a value, not a mapping or a list"
    ]
    assert problems(zip=[{"rounds": [1, 2], "seed": [1]}]) == [
        "zip.0: its lists must have the same length, to move together"
    ]
    assert problems(vary={"population.kinds.1.params.k": [2]}) == [
        "vary.population.kinds.1.params.k: 2: two kinds have the same label; give each a distinct `label`"
    ]
    assert problems(vary={"rounds": [1]}, zip=[{"rounds": [2]}]) == [
        "zip: a path is varied twice (in vary and zip, or in two zip groups)"
    ]
    assert problems(vary={"rounds": list(range(1, 101))}, replicates=11) == [
        "replicates: 1,100 runs in all; an experiment has at most 1,000"
    ]
    assert problems(vary={"rounds": []})[0].startswith("vary.rounds: List should have at least 1 item")
    assert (
        problems(base={**spec_data(), "rounds": 0})[0]
        == "base.rounds: Input should be greater than or equal to 1"
    )
    assert problems(max_parallel=0)[0] == "max_parallel: Input should be greater than or equal to 1"


def test_a_file_may_name_its_base_run_spec_relative_to_itself(tmp_path):
    (tmp_path / "base.yaml").write_text(
        "name: b\nscenario: {name: guess_two_thirds}\nrounds: 2\n"
        "population: {total: 10, kinds: [{kind: uniform, share: 100}]}\n"
    )
    (tmp_path / "exp.yaml").write_text("base: base.yaml\nvary: {rounds: [1, 3]}\n")
    assert [p.spec.rounds for p in load_experiment(tmp_path / "exp.yaml").plan()] == [1, 3]
    (tmp_path / "bad.yaml").write_text("base: missing.yaml\n")
    with pytest.raises(ExperimentError, match=r"missing\.yaml: cannot read"):
        load_experiment(tmp_path / "bad.yaml")


def test_t_quantiles_match_the_tables():
    assert t_quantile(1) == pytest.approx(12.706)
    assert t_quantile(10) == pytest.approx(2.228)
    assert t_quantile(10.7) == pytest.approx(2.228)  # fractional: the tabled value below
    assert t_quantile(60) == pytest.approx(2.000, abs=0.001)
    assert t_quantile(1000) == pytest.approx(1.962, abs=0.001)
    assert math.isinf(t_quantile(0))


def test_a_band_is_the_mean_with_its_t_interval_round_by_round():
    result = band([{1: 10.0, 2: 4.0}, {1: 12.0, 2: 6.0}, {1: 14.0}])
    assert result.rounds == [1, 2]
    assert result.mean == [12.0, 5.0]
    half = 4.303 * 2.0 / math.sqrt(3)  # sd of 10, 12, 14 is 2
    assert result.low[0] == pytest.approx(12 - half)
    assert result.high[0] == pytest.approx(12 + half)
    assert result.low[1] == pytest.approx(5 - 12.706 * math.sqrt(2) / math.sqrt(2))
    assert band([{1: 3.0}]).low == [None]


def test_an_effect_is_a_difference_of_means_with_welchs_interval():
    reference = [10.0, 12.0, 14.0]
    found = effect("b", [20.0, 21.0, 22.0], reference)
    assert found.difference == pytest.approx(9.0)
    a, b = 1.0 / 3, 4.0 / 3  # variances over n
    df = (a + b) ** 2 / (a**2 / 2 + b**2 / 2)
    half = t_quantile(df) * math.sqrt(a + b)
    assert (found.low, found.high) == (pytest.approx(9 - half), pytest.approx(9 + half))
    assert effect("a", reference, reference).difference is None
    same = effect("c", [5.0, 5.0], [3.0, 3.0])
    assert (same.difference, same.low, same.high) == (2.0, 2.0, 2.0)


def test_a_whole_list_of_kinds_is_a_factor_named_by_its_kinds():
    mix = [{"kind": "level_k", "share": 50, "params": {"k": k}} for k in (1, 2)]
    spec = parse(
        vary={"population.kinds": [[{"kind": "adaptive", "share": 100, "label": "all adaptive"}], mix]}
    )
    assert [c.label() for c in spec.cells()] == ["kinds=all adaptive", "kinds=level_k×2"]
    runs = [Run(id=i + 1, cell=i, rounds=3) for i in range(2)]
    [factor] = _effects(spec, runs, {1: 20.0, 2: 30.0})  # its values are lists: told apart by position
    assert [(lv["level"], lv["difference"]) for lv in factor["levels"]] == [
        ("all adaptive", None),
        ("level_k×2", 10.0),
    ]


def test_a_value_given_twice_and_an_experiment_too_big_to_store_are_refused():
    assert problems(vary={"rounds": [1, 2, 1]}) == ["vary.rounds: a value is given twice"]
    assert problems(zip=[{"rounds": [1, 1], "seed": [3, 3]}]) == ["zip.0: a value is given twice"]
    # 1,000 categories of 100 characters: a base of about 110 KB, stored by each of 500 runs.
    wide = {f"{i:03d}" + "x" * 97: 0.1 for i in range(1000)}
    base = spec_data(**{"population.attributes": {"a": wide}})
    found = problems(base=base, vary={"rounds": list(range(1, 101))}, replicates=5)
    assert len(found) == 1
    assert found[0].startswith("replicates: 500 runs of this base spec store 5")
    assert found[0].endswith(
        "MB of specs; an experiment stores at most 50 MB (fewer runs, or a smaller base)"
    )
