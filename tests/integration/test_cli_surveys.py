"""`myriad survey` and `myriad surveys …` on the embedded default, of a run `myriad run` drove."""

import asyncio
import json

import pytest
import yaml
from click.testing import CliRunner

from agents.spec import RunSpec
from backend.cli import main
from backend.runtime import Runtime
from backend.settings import Settings
from backend.store import runs
from backend.store import surveys as store
from tests.conftest import spec_data
from tests.integration.test_cli import _imported, embedded_default  # noqa: F401 - an autouse fixture

SURVEY = {
    "name": "next guess",
    "questions": [
        {"text": "What will you guess next?", "type": "number", "min": 0, "max": 100},
        {"text": "Why?"},
    ],
    "sample": {"kinds": ["level_k(k=1)", "uniform"]},
}


@pytest.mark.usefixtures("ray_cluster")
def test_a_survey_from_the_command_line(tmp_path):
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec_data(rounds=2)))
    (tmp_path / "survey.yaml").write_text(yaml.safe_dump(SURVEY))
    ran = CliRunner().invoke(main, ["run", str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "out")])
    assert ran.exit_code == 0, ran.output

    asked = CliRunner().invoke(main, ["survey", "1", str(tmp_path / "survey.yaml"), "--by", "kind"])
    assert asked.exit_code == 0, asked.output
    lines = asked.output.splitlines()
    assert "survey 1 of run 1: 2 question(s) to 400 agents, at round 2" in lines
    assert "survey 1 of run 1: completed, 800 answers, 400 agents" in lines
    assert "1. What will you guess next? (number)" in lines
    header = lines.index("1. What will you guess next? (number)") + 1
    assert lines[header].split() == [
        "group",
        "n",
        "mean",
        "sd",
        "min",
        "max",
        "unreadable",
        "skipped",
        "failed",
    ]
    # Level 1 answers 100 / 2 × 2/3 every round; every kind skips the free-text question.
    assert lines[header + 1].split() == [
        "level_k(k=1)",
        "300",
        "33.00",
        "0.00",
        "33.00",
        "33.00",
        "0",
        "0",
        "0",
    ]
    assert lines[header + 2].split()[:2] == ["uniform", "100"]
    assert lines[header + 4].split() == ["group", "answered", "unreadable", "skipped", "failed"]
    assert lines[header + 5].split() == ["level_k(k=1)", "0", "0", "300", "0"]

    listed = CliRunner().invoke(main, ["surveys", "list", "1"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[1].split() == [
        "1",
        "2",
        "completed",
        "400",
        "800",
        "2",
        "next",
        "guess",
    ]
    shown = CliRunner().invoke(main, ["surveys", "show", "1", "1"])
    assert shown.exit_code == 0, shown.output
    rows = [line.split() for line in shown.output.splitlines() if line.startswith("all")]
    assert [row[:2] for row in rows] == [["all", "400"], ["all", "0"]]  # numbers read; texts answered
    exported = CliRunner().invoke(main, ["surveys", "export", "1", "1", "--format", "json"])
    assert exported.exit_code == 0, exported.output
    assert exported.output == "800 answers written to run-1-survey-1.json\n"
    rows = json.loads((tmp_path / "run-1-survey-1.json").read_text())
    assert {r["value"] for r in rows if r["question"] == 0 and r["agent_id"] < 500} >= {33.0}

    missing = CliRunner().invoke(main, ["surveys", "show", "1", "9"])
    assert (missing.exit_code, missing.stderr) == (1, "survey 9 not found in run 1\n")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"questions": [{"text": "?", "type": "number"}]}))
    refused = CliRunner().invoke(main, ["survey", "1", str(tmp_path / "bad.yaml")])
    assert refused.exit_code == 1
    assert refused.stderr.splitlines() == [
        "invalid survey:",
        "  questions.0.min: a number question needs min and max",
        "  questions.0.max: a number question needs min and max",
    ]
    # Reading surveys opens the database alone.
    assert _imported("surveys", "list", "1") == "imported: none"


MARKUP = {
    "name": "[bold]launch[/bold]",
    "questions": [
        {"text": "Would you buy [product]?", "type": "choice", "options": ["Yes [b]", "[/INST] no"]},
        {"text": "Why [not]?"},
    ],
}


async def _stored_survey() -> None:
    """A run and a survey of it whose question, options and answers read like Rich markup."""
    async with Runtime(Settings(), live=False) as rt, rt.sessions() as session:
        run = await runs.create_run(session, spec=RunSpec.parse(spec_data(rounds=1)))
        survey = await store.create_survey(session, run_id=run.id, round=1, spec=MARKUP, agents=2)
        answers = [
            {"agent_id": 0, "question": 0, "answer": "[/INST] no", "choice": "[/INST] no", "tokens": 0},
            {"agent_id": 1, "question": 0, "answer": "yes [b]", "choice": "Yes [b]", "tokens": 0},
            {"agent_id": 0, "question": 1, "answer": "[/INST] I am [product] shy", "tokens": 0},
            {"agent_id": 1, "question": 1, "answer": "[red]because[/red]", "tokens": 0},
        ]
        await store.add_answers(session, survey_id=survey.id, rows=answers)
        await store.finish(session, survey_ids=[survey.id], status="completed")
        await session.commit()


def test_what_users_and_models_wrote_is_printed_as_written_not_as_markup():
    asyncio.run(_stored_survey())
    shown = CliRunner().invoke(main, ["surveys", "show", "1", "1"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert "1. Would you buy [product]? (choice)" in lines
    assert lines[lines.index("1. Would you buy [product]? (choice)") + 1].split()[:5] == [
        "group", "Yes", "[b]", "[/INST]", "no",
    ]  # fmt: skip
    assert "agent 0: [/INST] I am [product] shy" in lines
    assert "agent 1: [red]because[/red]" in lines
    listed = CliRunner().invoke(main, ["surveys", "list", "1"])
    assert listed.exit_code == 0, listed.output
    assert listed.output.splitlines()[1].split()[-1] == "[bold]launch[/bold]"
