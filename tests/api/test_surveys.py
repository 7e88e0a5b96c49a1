"""Surveys through the API, of a rule-based run the embedded service drove itself: answers from
the guessers' survey hook, reasons for what they cannot answer, counts checked by hand against
the stored actions, the refusals, paging and downloads."""

import csv
import io
import statistics

import pytest
from fastapi.testclient import TestClient

from backend.store import surveys as store
from tests.conftest import API, driving_app, driving_settings, module_database, spec_data
from tests.waiting import wait_for, wait_for_run

NUMBER = {"text": "What will you guess next?", "type": "number", "min": 0, "max": 100}
CHOICE = {"text": "Will the mean fall?", "type": "choice", "options": ["Yes", "No"]}
TEXT = {"text": "Why?"}


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def finished(request, tmp_path_factory, redis_url, ray_cluster):
    """(client, run) for the base spec's 1,000 rule-based agents over 3 rounds, completed."""
    database_url = module_database(request, tmp_path_factory, "surveys")
    with TestClient(driving_app(driving_settings(database_url, redis_url)), headers=API) as client:
        run = client.post("/api/v1/runs", json=spec_data(rounds=3)).json()
        wait_for_run(client, run["id"], "completed")
        yield client, run


def asked(client, run, spec: dict) -> dict:
    """Create a survey and wait for it to end; its detail."""
    created = client.post(f"/api/v1/runs/{run['id']}/surveys", json=spec)
    assert created.status_code == 202, created.text
    survey = created.json()
    assert survey["status"] in ("queued", "running", "completed")
    url = f"/api/v1/runs/{run['id']}/surveys/{survey['id']}"
    return wait_for(
        lambda: (s := client.get(url).json())["status"] not in ("queued", "running") and s,
        f"survey {survey['id']} to end",
    )


def test_guessers_answer_numbers_and_are_skipped_with_reasons_otherwise(finished):
    client, run = finished
    survey = asked(client, run, {"name": "after the game", "questions": [NUMBER, CHOICE, TEXT]})
    assert survey["status"] == "completed"
    assert survey["round"] == 3
    assert survey["agents"] == 1000
    assert survey["answered"] == 3000
    number, choice, text = survey["questions"]
    # Each guesser answers with its last guess: the stored round-3 actions, counted by hand.
    actions = client.get(f"/api/v1/runs/{run['id']}/export", params={"table": "actions", "format": "json"})
    last = [a["value"] for a in actions.json() if a["round"] == 3]
    assert (number["read"], number["n"], number["skipped"]) == (1000, 1000, 0)
    assert number["mean"] == pytest.approx(statistics.mean(last))
    assert number["sd"] == pytest.approx(statistics.stdev(last))
    assert (number["min"], number["max"]) == (min(last), max(last))
    assert len(number["histogram"]["counts"]) == 20
    assert sum(number["histogram"]["counts"]) == 1000
    for question in (choice, text):
        assert (question["answers"], question["skipped"], question["read"]) == (1000, 1000, 0)
    answers = client.get(f"/api/v1/runs/{run['id']}/surveys/{survey['id']}/answers", params={"limit": 3})
    page = answers.json()
    assert page["count"] == 3000
    assert [(a["agent_id"], a["question"]) for a in page["data"]] == [(0, 0), (0, 1), (0, 2)]
    first = page["data"]
    assert first[0]["value"] == last[0]
    assert first[1]["error"].startswith("skipped: kind level_k has no answer to a choice question")
    assert first[2]["error"].startswith("skipped: kind level_k has no answer to a text question")
    # The survey is on the run's record; it cost nothing.
    events = client.get(f"/api/v1/runs/{run['id']}/events").json()["data"]
    event = next(e for e in events if e["kind"] == "survey")
    assert event["payload"] | {"usage": None} == {
        "survey": survey["id"], "name": "after the game", "agents": 1000, "questions": 3,
        "status": "completed", "answered": 3000, "usage": None,
    }  # fmt: skip
    assert client.get(f"/api/v1/runs/{run['id']}/usage").json()["surveys"]["tokens"] == 0


def test_answers_are_broken_down_by_kind_or_attribute(finished):
    client, run = finished
    survey = asked(client, run, {"questions": [NUMBER], "sample": {"where": {"gender": "female"}}})
    assert survey["agents"] == 500
    url = f"/api/v1/runs/{run['id']}/surveys/{survey['id']}"
    whole = client.get(url).json()["questions"][0]
    by_kind = client.get(url, params={"by": "kind"}).json()["questions"][0]
    assert [g["group"] for g in by_kind["groups"]] == sorted(
        ["adaptive(rate=0.5)", "level_k(k=0)", "level_k(k=1)", "level_k(k=2)", "uniform"]
    )
    assert sum(g["n"] for g in by_kind["groups"]) == whole["n"] == 500
    weighted = sum(g["mean"] * g["n"] for g in by_kind["groups"]) / 500
    assert weighted == pytest.approx(whole["mean"])
    # Level 1 always answers 100 / 2 × 2/3.
    level1 = next(g for g in by_kind["groups"] if g["group"] == "level_k(k=1)")
    assert (level1["min"], level1["max"], level1["sd"]) == (33.0, 33.0, 0.0)
    by_education = client.get(url, params={"by": "education"}).json()["questions"][0]
    assert {g["group"] for g in by_education["groups"]} == {"school", "university"}
    assert sum(g["n"] for g in by_education["groups"]) == 500


def test_a_random_sample_asks_that_many_agents(finished):
    client, run = finished
    survey = asked(client, run, {"questions": [NUMBER], "sample": {"random": 25}})
    assert (survey["agents"], survey["answered"], survey["questions"][0]["n"]) == (25, 25, 25)
    listed = client.get(f"/api/v1/runs/{run['id']}/surveys").json()
    assert listed["data"][0]["id"] == survey["id"]  # newest first
    assert listed["count"] == len(listed["data"]) >= 1


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"questions": [NUMBER | {"min": 200}]}, "questions.0.max", "must be above min"),
        ({"questions": []}, "questions", "at least 1 item"),
        ({"questions": [CHOICE | {"options": ["Yes"]}]}, "questions.0.options", "at least 2"),
        ({"questions": [TEXT], "sample": {"random": 0}}, "sample.random", "greater than or equal to 1"),
        ({"questions": [TEXT], "sample": {"where": {"height": "x"}}}, "sample.where.height", "no attribute"),
        ({"questions": [TEXT], "sample": {"where": {"gender": "other"}}}, "sample.where.gender", "no agent"),
        ({"questions": [TEXT], "sample": {"kinds": ["oracle"]}}, "sample.kinds.0", "no kind 'oracle'"),
    ],
)
def test_a_bad_survey_is_refused_naming_the_field(finished, body, field, words):
    client, run = finished
    refused = client.post(f"/api/v1/runs/{run['id']}/surveys", json=body)
    assert refused.status_code == 422, refused.text
    errors = refused.json()["errors"]
    assert any(e["field"] == field and words in e["message"] for e in errors), errors


def test_unknown_surveys_and_breakdowns_are_said_so(finished):
    client, run = finished
    assert client.get(f"/api/v1/runs/{run['id']}/surveys/999999").status_code == 404
    assert client.get("/api/v1/runs/999999/surveys").status_code == 404
    survey = client.get(f"/api/v1/runs/{run['id']}/surveys").json()["data"][-1]
    refused = client.get(f"/api/v1/runs/{run['id']}/surveys/{survey['id']}", params={"by": "height"})
    assert refused.status_code == 422
    message = "the population has no attribute 'height' (break down by: kind, education, gender)"
    assert refused.json()["errors"] == [{"field": "by", "message": message}]


def test_answers_download_as_csv_and_json(finished):
    client, run = finished
    survey = asked(client, run, {"questions": [NUMBER, TEXT], "sample": {"random": 4}})
    url = f"/api/v1/runs/{run['id']}/surveys/{survey['id']}/export"
    as_csv = client.get(url, params={"format": "csv"})
    assert as_csv.status_code == 200
    assert as_csv.headers["content-type"].startswith("text/csv")
    assert f"run-{run['id']}-survey-{survey['id']}.csv" in as_csv.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert list(rows[0]) == ["agent_id", "question", "answer", "value", "choice", "error", "tokens"]
    assert len(rows) == 8
    as_json = client.get(url, params={"format": "json"}).json()
    paged = client.get(f"/api/v1/runs/{run['id']}/surveys/{survey['id']}/answers").json()["data"]
    assert as_json == paged


async def _orphan(rt, run_id: int) -> int:
    """A survey left `running` by a process that died: no process says it asks it."""
    async with rt.sessions() as session:
        survey = await store.create_survey(
            session, run_id=run_id, round=3, spec={"questions": [TEXT]}, agents=5
        )
        await store.mark(session, survey_id=survey.id, status="running")
        await session.commit()
        return survey.id


def test_a_survey_nobody_asks_any_more_is_interrupted_when_read(finished):
    client, run = finished
    rt = client.app.state.runtime
    survey_id = client.portal.call(_orphan, rt, run["id"])
    # Its asker's word has expired (another test's survey of the same id, in a database of its
    # own, may have said so lately on this shared Redis).
    client.portal.call(rt.live.redis.delete, f"myriad:survey:{survey_id}")
    read = client.get(f"/api/v1/runs/{run['id']}/surveys/{survey_id}").json()
    assert (read["status"], read["error"]) == ("interrupted", "the process asking it stopped")
    assert read["finished_at"] is not None


def test_a_running_run_is_surveyed_at_its_latest_recorded_round_and_goes_on(finished):
    client, _ = finished
    probes = [{"kind": "probe", "share": 100, "params": {"delay": 0.1}}]
    spec = spec_data(name="still going", rounds=100, **{"population.total": 50, "population.kinds": probes})
    run = client.post("/api/v1/runs", json=spec).json()
    wait_for_run(client, run["id"], "running", done=lambda r: r["round"] >= 2)
    try:
        survey = asked(client, run, {"questions": [NUMBER]})
        assert survey["status"] == "completed"
        assert survey["round"] >= 2
        assert survey["questions"][0]["n"] == 50  # each probe's last guess
        later = wait_for_run(client, run["id"], "running", done=lambda r: r["round"] > survey["round"])
        assert later["status"] == "running"
    finally:
        client.post(f"/api/v1/runs/{run['id']}/stop")


def test_a_run_that_has_not_started_is_not_surveyed(client):
    run = client.post("/api/v1/runs", json=spec_data()).json()  # no worker here: it stays queued
    try:
        refused = client.post(f"/api/v1/runs/{run['id']}/surveys", json={"questions": [TEXT]})
        assert refused.status_code == 409
        said = f"run {run['id']} is queued: only a run that has started can be surveyed"
        assert refused.json()["detail"] == said
    finally:  # not left queued in the shared database, for another test's worker to take
        client.post(f"/api/v1/runs/{run['id']}/stop")
