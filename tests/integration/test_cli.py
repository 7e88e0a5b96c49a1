import asyncio
import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from backend import services
from backend.cli import main
from backend.runtime import Runtime
from backend.settings import Settings
from tests.conftest import spec_data, stub_model
from tests.waiting import wait_for


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

    # The runs and the rounds as tables: numbers right-aligned, every cell in its column.
    listed = CliRunner().invoke(main, ["runs", "list"])
    assert listed.exit_code == 0, listed.output
    header, row = listed.output.splitlines()
    assert header.split() == ["id", "status", "round", "rounds", "agents", "created", "name"]
    assert row.index("completed") == header.index("status")
    for column, value in (("round", "3"), ("rounds", "3"), ("agents", "1,000")):
        end = header.index(column) + len(column)
        assert row[end - len(value) : end] == value, column
    shown = CliRunner().invoke(main, ["runs", "show", "1"])
    assert shown.exit_code == 0, shown.output
    first, header, *rows = shown.output.splitlines()
    assert first.startswith("run 1 'test': completed, round 3 of 3, 1,000 agents")
    assert [r.split()[0] for r in rows] == ["1", "2", "3"]
    for r, stored in zip(rows, rounds, strict=True):
        end = header.index("cnt") + len("cnt")
        assert r[end - len("1,000") : end] == "1,000"
        assert f"{stored['stats']['avg']:.2f}" in r.split()


# Runs a `myriad` command, then says which of the heavy modules the process imported.
_IMPORTED = """
import sys
from backend.cli import main
try:
    main(sys.argv[1:], prog_name="myriad")
except SystemExit as e:
    if e.code:
        raise
heavy = ("ray", "agents.host", "agents.simulation", "backend.workflow.driver", "pyarrow", "aiohttp")
print("imported:", " ".join(m for m in heavy if m in sys.modules) or "none")
"""


def _imported(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTED, *args], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()[-1]


def test_commands_that_read_import_no_ray(spec_file):
    """`myriad runs list/show/export` and `db` answer at once: no Ray, no engine, none of what
    only `myriad run`, `serve` or `worker` need (nor does queuing a run)."""
    assert _imported("run", "--submit", spec_file()) == "imported: none"
    for command in (["runs", "list"], ["runs", "show", "1"], ["runs", "export", "1"], ["db", "upgrade"]):
        assert _imported(*command) == "imported: none", command


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


def llm_changes(url: str, **changes) -> dict:
    """A small run of language-model agents on the stand-in server, with a budget of one token:
    it pauses after its first round."""
    kinds = [{"kind": "llm_guess", "share": 100, "params": {"model": "stub", "turn_timeout": 5}}]
    return {
        "rounds": 3,
        "placement": {"hosts": 2, "agent_timeout": 10},
        "llm": {"models": {"stub": stub_model(url)}},
        "budget": {"tokens": 1},
        "population.total": 60,
        "population.kinds": kinds,
    } | changes


SPENT = r"the token budget is spent \([\d,]+ of 1\)"


@pytest.mark.usefixtures("ray_cluster")
def test_a_run_that_spends_its_budget_says_so_and_how_to_go_on(spec_file, llm_stub):
    """No worker runs: `myriad run` drives the run here, says what it does while Ray starts, and
    when the budget is spent says so, how to go on, and exits, handing the run back."""
    result = CliRunner().invoke(main, ["run", spec_file(**llm_changes(llm_stub.url))])
    assert result.exit_code == 3, result.output
    lines = result.output.splitlines()
    assert lines[:2] == ["opening the database and the live layer…", "starting Ray (a local cluster)…"]
    assert "driven here (no worker is running" in lines[2]
    assert re.search(rf"^run 1 paused at round 1: {SPENT}$", result.output, re.MULTILINE)
    assert "to go on: myriad runs resume 1 --budget-tokens N (or --budget-cost C)" in lines
    assert "run 1 stays paused at round 1; results written to results/test-1/" in result.output
    assert [r["round"] for r in json.loads(Path("results/test-1/rounds.json").read_text())] == [1]

    shown = CliRunner().invoke(main, ["runs", "show", "1"])
    assert re.search(rf"^paused: {SPENT}$", shown.output, re.MULTILINE), shown.output
    refused = CliRunner().invoke(main, ["runs", "resume", "1"])
    assert refused.exit_code == 1
    assert re.fullmatch(rf"run 1 cannot resume: {SPENT}; resume it with a larger budget\n", refused.stderr)
    refused = CliRunner().invoke(main, ["runs", "resume", "1", "--budget-tokens", "2"])
    assert refused.exit_code == 1
    assert "the token budget is spent" in refused.stderr
    raised = CliRunner().invoke(main, ["runs", "resume", "1", "--budget-tokens", "10000000"])
    assert raised.exit_code == 0, raised.output
    assert raised.output == "run 1: resume sent with a budget of 10,000,000 tokens\n"


async def _workers() -> list[dict]:
    async with Runtime(Settings()) as rt:
        return await services.workers(rt)


def test_run_hands_its_run_to_a_live_worker_and_waits_on_a_pause(spec_file, llm_stub, ray_cluster, tmp_path):
    """A `myriad worker` runs on this database: `myriad run` queues the run for it and follows,
    starting no Ray of its own; paused, with --wait-on-pause it waits for the resume."""
    with (tmp_path / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "backend.cli", "worker", "--address", ray_cluster.address], stderr=log
        )
    following = None
    try:

        def present() -> bool:
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            return bool(asyncio.run(_workers()))

        wait_for(present, "the worker to say it is there", 120, every=0.2)
        path = spec_file(**llm_changes(llm_stub.url))
        following = subprocess.Popen(
            [sys.executable, "-c", _IMPORTED, "run", path, "--wait-on-pause"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert following.stdout is not None
        seen = []
        for line in following.stdout:
            seen.append(line.rstrip("\n"))
            if line.startswith("to go on:"):
                break
        assert re.search(rf"run 1 paused at round 1: {SPENT}", "\n".join(seen)), seen
        raised = CliRunner().invoke(main, ["runs", "resume", "1", "--budget-tokens", "10000000"])
        assert raised.exit_code == 0, raised.output
        # The rest through the same reader: `communicate` reads the pipe itself, and would lose
        # what the loop above has read ahead (the line after "to go on:", when it came at once).
        out = following.stdout.read()
        _, err = following.communicate(timeout=120)
        assert following.returncode == 0, err
        lines = seen + out.splitlines()
        assert re.fullmatch(r"run 1: 60 agents; .*; driven by worker \S+", lines[1])
        assert "waiting for it to be resumed or stopped (Ctrl-C leaves it paused)" in lines
        assert "run 1 resumed" in lines
        assert [line.split()[0] for line in lines if re.match(r"\s+\d\s", line)] == ["1", "2", "3"]
        assert (
            "run 1 completed; results written to results/test-1/ (rounds.json, rounds.csv, spec.json)"
            in lines
        )
        assert lines[-1] == "imported: none"  # it started no Ray, nor any part of the engine
    finally:
        if following is not None and following.poll() is None:
            following.send_signal(signal.SIGINT)
            following.wait(timeout=60)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
