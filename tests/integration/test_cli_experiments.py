"""`myriad experiment run` and `myriad experiments …` on the embedded default."""

import csv
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from backend.cli import main
from backend.cli.main import results_folder
from tests.conftest import spec_data
from tests.integration.test_cli import _imported, embedded_default, llm_changes  # noqa: F401 - an autouse fixture


def experiment_file(tmp_path, **fields) -> str:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(spec_data(rounds=2, **{"population.total": 200})))
    data = {"name": "cli", "base": "base.yaml", "vary": {"scenario.params.ratio": ["2/3", "1/2"]}} | fields
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(data))
    return str(tmp_path / "exp.yaml")


@pytest.mark.usefixtures("ray_cluster")
def test_an_experiment_from_the_command_line(tmp_path):
    path = experiment_file(tmp_path, replicates=2)
    ran = CliRunner().invoke(main, ["experiment", "run", path, "--out", str(tmp_path / "out")])
    assert ran.exit_code == 0, ran.output
    lines = ran.output.splitlines()
    assert lines[0] == "experiment 1 queued: 4 runs (800 agents in all), 2 at a time"
    assert "experiment 1 completed" in lines
    means = lines[lines.index("final avg by cell") + 2 :][:2]
    assert [row.split()[:2] for row in means] == [["ratio=2/3", "2"], ["ratio=1/2", "2"]]
    effect = lines[lines.index("effect of scenario.params.ratio") + 2 :][:2]
    assert effect[0].split()[0] == "2/3"
    assert effect[0].split()[-1] == "reference"
    assert effect[1].split()[0] == "1/2"
    with (tmp_path / "out" / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 * 2
    assert {r["scenario.params.ratio"] for r in rows} == {"2/3", "1/2"}

    listed = CliRunner().invoke(main, ["experiments", "list"])
    assert listed.output.splitlines()[1].split() == ["1", "cli", "completed", "4/4", "8/8"]
    shown = CliRunner().invoke(main, ["experiments", "show", "1"])
    assert "experiment 1: cli — completed, 8 of 8 rounds, 2 runs at a time" in shown.output
    exported = CliRunner().invoke(main, ["experiments", "export", "1", "--out", str(tmp_path / "r.csv")])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "r.csv").read_text() == (tmp_path / "out" / "results.csv").read_text()
    # The whole experiment has ended: nothing to pause.
    paused = CliRunner().invoke(main, ["experiments", "pause", "1"])
    assert paused.exit_code == 1
    assert "experiment 1 has ended; it cannot pause" in paused.stderr


def test_a_bad_experiment_names_the_factor_before_anything_starts(tmp_path):
    path = experiment_file(tmp_path, vary={"scenario.params.ratio": ["2/3", "x"]}, replicates=0)
    result = CliRunner().invoke(main, ["experiment", "run", path])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{path}: invalid experiment spec",
        "  replicates: Input should be greater than or equal to 1",
    ]
    path = experiment_file(tmp_path, vary={"scenario.params.ratio": ["2/3", "x"]})
    result = CliRunner().invoke(main, ["experiment", "run", path])
    assert result.stderr.splitlines()[1:] == [
        "  vary.scenario.params.ratio: x: Input is not a valid fraction"
    ]
    missing = CliRunner().invoke(main, ["experiments", "show", "9"])
    assert missing.exit_code == 1
    assert "experiment 9 not found" in missing.stderr


def test_experiment_commands_that_read_import_no_ray(tmp_path):
    path = experiment_file(tmp_path)
    assert _imported("experiment", "run", "--submit", path) == "imported: none"
    for command in (["experiments", "list"], ["experiments", "show", "1"], ["experiments", "export", "1"]):
        assert _imported(*command) == "imported: none", command


@pytest.mark.usefixtures("ray_cluster")
def test_an_experiment_that_spends_its_budget_says_so_and_exits(tmp_path, llm_stub):
    """Its runs paused and its queued ones held: `experiment run` says why and how to go on, and
    exits with status 3 (as `myriad run` does), its results folder named safely."""
    base = spec_data(**llm_changes(llm_stub.url)) | {"budget": None}
    data = {"name": "../../spent", "base": base, "vary": {"seed": [1, 2, 3]}, "budget": {"tokens": 500}}
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump(data))
    ran = CliRunner().invoke(main, ["experiment", "run", str(tmp_path / "exp.yaml")])
    assert ran.exit_code == 3, ran.output
    lines = ran.output.splitlines()
    assert any(
        line.startswith("experiment 1 paused: the experiment's token budget is spent (") for line in lines
    )
    assert "to go on: myriad experiments resume 1 --budget-tokens N" in lines
    refused = CliRunner().invoke(main, ["experiments", "resume", "1"])
    assert refused.exit_code == 1
    assert "experiment 1 cannot resume: the experiment's token budget is spent" in refused.stderr
    assert results_folder("../../spent", "e1") == Path("results/spent-e1")
