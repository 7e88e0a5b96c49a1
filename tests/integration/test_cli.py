import csv
import json
import os
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from backend.cli import main
from tests.conftest import spec_data


@pytest.fixture(autouse=True)
def embedded_default(tmp_path, monkeypatch):
    """As on a fresh machine: no settings, so a SQLite file here and an embedded Redis server."""
    monkeypatch.chdir(tmp_path)
    for name in ("DATABASE_URL", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def spec_file(tmp_path):
    def write(**changes) -> str:
        path = tmp_path / "spec.yaml"
        path.write_text(yaml.safe_dump(spec_data(**changes)))
        return str(path)

    return write


@pytest.mark.usefixtures("ray_cluster")
def test_run_prints_every_round_and_writes_results(spec_file, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", spec_file(rounds=3), "--out", str(out), "--hosts", "2"])
    assert result.exit_code == 0, result.output
    assert "run 1: 1,000 agents" in result.output
    lines = [line.split() for line in result.output.splitlines()]
    header = next(line for line in lines if line[:2] == ["round", "win"])
    assert header == ["round", "win", "cnt", "avg", "med", "std", "max", "min", "time", "failed"]
    assert [line[0] for line in lines if line and line[0] in "123" and len(line) == 10] == ["1", "2", "3"]
    rounds = json.loads((out / "rounds.json").read_text())
    assert [r["round"] for r in rounds] == [1, 2, 3]
    assert all(r["stats"]["cnt"] == 1000 for r in rounds)
    with (out / "rounds.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [float(r["win"]) for r in rows] == [r["stats"]["win"] for r in rounds]
    assert json.loads((out / "spec.json").read_text())["rounds"] == 3


def test_a_bad_spec_stops_before_anything_starts(spec_file):
    path = spec_file(**{"population.total": 0, "scenario.name": "chess"})
    result = CliRunner().invoke(main, ["run", path])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{path}: invalid run spec",
        "  scenario: unknown scenario 'chess'; known: guess_two_thirds, social",
        "  population.total: Input should be greater than or equal to 1",
    ]


def test_a_missing_spec_file_is_named(tmp_path):
    result = CliRunner().invoke(main, ["run", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml: cannot read (No such file or directory)" in result.stderr


def test_embedded_default_starts_and_stops_its_own_cluster(spec_file, tmp_path):
    """What `make run` does: no address, so a private local Ray cluster lives for the run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    path = spec_file(**{"population.total": 200, "rounds": 2})
    done = subprocess.run(
        [sys.executable, "-m", "backend.cli", "run", path, "--out", str(tmp_path / "o")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "run 1: 200 agents" in done.stdout
    assert (tmp_path / "o" / "rounds.csv").exists()
