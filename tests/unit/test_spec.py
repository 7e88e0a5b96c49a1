import pytest

from agents.spec import RunSpec, SpecError, load_spec
from tests.conftest import SOCIAL, spec_data


def problems(**changes) -> list[str]:
    with pytest.raises(SpecError) as caught:
        RunSpec.parse(spec_data(**changes))
    return caught.value.problems


def test_the_base_spec_is_valid_with_defaults_filled(make_spec):
    spec = make_spec()
    assert spec.scenario.params == {"ratio": "2/3", "max_value": 100, "show_last_result": True}
    assert spec.placement.hosts is None
    assert spec.population.kinds[3].label == "adaptive(rate=0.5)"


@pytest.mark.parametrize(
    ("changes", "where", "what"),
    [
        ({"scenario.name": "chess"}, "scenario", "unknown scenario 'chess'; known: guess_two_thirds"),
        ({"population.kinds.0.kind": "oracle"}, "population.kinds.0", "unknown agent kind 'oracle'"),
        ({"population.total": -5}, "population.total", "greater than or equal to 1"),
        ({"population.total": 10**9}, "population.total", "less than or equal to 100000000"),
        ({"rounds": 0}, "rounds", "greater than or equal to 1"),
        (
            {"population.attributes.gender": {"f": 50, "m": 40}},
            "population.attributes",
            "attribute 'gender' percentages add up to 90, not 100",
        ),
        ({"population.kinds.0.share": 30}, "population.kinds", "kind percentages add up to 110, not 100"),
        ({"placement": {"hosts": 1001}}, "placement.hosts", "1001 hosts for 1000 agents"),
        (SOCIAL | {"population.total": 5}, "scenario.params.seeds", "10 seeds for 5 agents"),
        ({"scenario.params": {"ratio": "3/2"}}, "scenario", "ratio must lie strictly between 0 and 1"),
        (
            {"scenario.params": {"max_value": 0}},
            "scenario",
            "max_value: Input should be greater than or equal to 1",
        ),
        ({"scenario.params": {"colour": "red"}}, "scenario", "colour: Extra inputs are not permitted"),
        (
            {"population.kinds.1.params": {"k": 7}},
            "population.kinds.1",
            "k: Input should be less than or equal to 3",
        ),
        (
            {"population.background": "{name} likes {food}"},
            "population.background",
            "background names unknown fields ['food']",
        ),
        (
            {"population.background": "{name:>20000000} and {gender!r}"},
            "population.background",
            "background takes plain fields like {name}, not {gender!r}, {name:>20000000}",
        ),
        (
            {"population.background": "{name} " * 300},
            "population.background",
            "at most 2000 characters",
        ),
        ({"placement": {"agent_timeout": -1}}, "placement.agent_timeout", "greater than 0"),
        ({"population.kinds": []}, "population.kinds", "at least 1 item"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
    ],
)
def test_bad_specs_name_the_field_and_the_problem(changes, where, what):
    found = problems(**changes)
    assert any(p.startswith(f"{where}: ") and what in p for p in found), found


def test_a_stored_spec_is_read_without_the_checks_that_refuse_new_runs():
    # Stored before its scenario checked seeds against the population: its run stays readable.
    crowded = spec_data(**SOCIAL | {"population.total": 5})
    with pytest.raises(SpecError, match="10 seeds for 5 agents"):
        RunSpec.parse(crowded)
    assert RunSpec.stored(crowded).scenario.params["seeds"] == 10


def test_every_problem_is_reported_at_once():
    found = problems(**{"rounds": -1, "population.total": 0})
    assert {p.split(":")[0] for p in found} >= {"rounds", "population.total"}


@pytest.mark.parametrize(
    ("ratio", "expected"), [("2/3", "2/3"), (0.67, "67/100"), ("51/100", "51/100"), (0.5, "1/2")]
)
def test_ratio_takes_fractions_and_decimals(ratio, expected):
    spec = RunSpec.parse(spec_data(**{"scenario.params": {"ratio": ratio}}))
    assert spec.scenario.params["ratio"] == expected


def test_load_spec_reads_yaml_and_json(tmp_path):
    import json

    import yaml

    (tmp_path / "s.yaml").write_text(yaml.safe_dump(spec_data()))
    (tmp_path / "s.json").write_text(json.dumps(spec_data()))
    assert load_spec(tmp_path / "s.yaml") == load_spec(tmp_path / "s.json")


def test_load_spec_reports_unreadable_files(tmp_path):
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("rounds: [1,\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="mapping of spec fields"):
        load_spec(tmp_path / "list.yaml")


def test_load_spec_refuses_bombs_with_one_line(tmp_path):
    (tmp_path / "deep.yaml").write_text("rounds: " + "[" * 5000 + "]" * 5000)
    with pytest.raises(SpecError, match="nested too deeply"):
        load_spec(tmp_path / "deep.yaml")
    (tmp_path / "big.yaml").write_text("name: " + "x" * 2_000_000)
    with pytest.raises(SpecError, match="larger than 1,000,000 bytes"):
        load_spec(tmp_path / "big.yaml")


def test_the_shipped_example_is_valid():
    spec = load_spec("examples/guess-10k.yaml")
    assert spec.population.total == 10_000
