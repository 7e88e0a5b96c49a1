"""Surveys of language-model agents, asked through the stand-in server by the service that drove
the run: the counts checked by hand against the stored answers, the use billed to the run, the
budget that stops a survey; and a rule-based run whose kinds cannot answer."""

import statistics
from collections import Counter

import pytest
from fastapi.testclient import TestClient

from backend import services
from backend.services.surveys import BATCH
from tests.conftest import API, SOCIAL, driving_app, spec_data
from tests.integration.test_llm_runs import driving_anew, llm_spec
from tests.waiting import wait_for, wait_for_run

NUMBER = {"text": "How much do you trust the others, from 0 to 10?", "type": "number", "min": 0, "max": 10}
CHOICE = {"text": "Will the mean fall?", "type": "choice", "options": ["Yes", "No", "Not sure"]}


@pytest.fixture
def service(tmp_path, redis_url, ray_cluster):
    with TestClient(driving_app(driving_anew(tmp_path / "surveys.db", redis_url)), headers=API) as client:
        yield client


def survey_of(service, run_id: int, body: dict) -> dict:
    created = service.post(f"/api/v1/runs/{run_id}/surveys", json=body)
    assert created.status_code == 202, created.text
    url = f"/api/v1/runs/{run_id}/surveys/{created.json()['id']}"
    return wait_for(
        lambda: (s := service.get(url).json())["status"] not in ("queued", "running") and s,
        f"survey {created.json()['id']} to end",
        timeout=180,
    )


def test_a_thousand_llm_agents_answer_and_the_counts_match_their_answers(service, llm_stub):
    run = service.post("/api/v1/runs", json=llm_spec(llm_stub.url, rounds=1, **{"population.total": 1000}))
    run_id = run.json()["id"]
    wait_for_run(service, run_id, "completed")
    before = service.get(f"/api/v1/runs/{run_id}/usage").json()
    served = llm_stub.served
    tokens_before = served.prompt_tokens + served.completion_tokens
    llm_stub.config.garbage_rate = 0.1  # a tenth of the replies hold no answer: counted apart
    survey = survey_of(service, run_id, {"name": "trust", "questions": [NUMBER, CHOICE]})
    assert survey["status"] == "completed", survey
    assert (survey["agents"], survey["answered"]) == (1000, 2000)
    answers = service.get(f"/api/v1/runs/{run_id}/surveys/{survey['id']}/export", params={"format": "json"})
    rows = answers.json()
    assert len(rows) == 2000
    number, choice = survey["questions"]

    # The number question, by hand from the stored answers.
    mine = [r for r in rows if r["question"] == 0]
    values = [r["value"] for r in mine if r["error"] is None]
    unreadable = [r for r in mine if r["error"] is not None]
    assert all(r["error"] == "unreadable: no number in the answer" for r in unreadable)
    assert 50 < len(unreadable) < 150
    assert (number["read"], number["unreadable"], number["skipped"], number["failed"]) == (
        len(values), len(unreadable), 0, 0,
    )  # fmt: skip
    assert number["n"] == len(values)
    assert number["mean"] == pytest.approx(statistics.mean(values))
    assert number["sd"] == pytest.approx(statistics.stdev(values))
    assert number["histogram"]["labels"] == [str(i) for i in range(11)]
    assert number["histogram"]["counts"] == [values.count(float(i)) for i in range(11)]
    assert len(set(values)) > 5  # the agents answer their own ways

    # The choice question: each option's count.
    chosen = Counter(r["choice"] for r in rows if r["question"] == 1 and r["error"] is None)
    assert choice["counts"] == {option: chosen[option] for option in CHOICE["options"]}
    assert sum(chosen.values()) + choice["unreadable"] == 1000
    assert min(chosen.values()) > 100

    # Billed to the run: its use grows by exactly the survey's tokens, which the server counted.
    spent = sum(r["tokens"] for r in rows)
    assert spent == served.prompt_tokens + served.completion_tokens - tokens_before > 0
    after = service.get(f"/api/v1/runs/{run_id}/usage").json()
    assert after["surveys"]["tokens"] == spent
    assert after["total"]["tokens"] == before["total"]["tokens"] + spent
    assert after["models"]["stub"]["calls"] == before["models"]["stub"]["calls"] + 2000
    event = next(
        e for e in service.get(f"/api/v1/runs/{run_id}/events").json()["data"] if e["kind"] == "survey"
    )
    assert event["payload"]["usage"]["stub"]["calls"] == 2000
    assert event["payload"]["status"] == "completed"


def test_a_survey_stops_when_the_run_budget_is_spent(service, llm_stub):
    # The same run twice: the first says what its round costs, the second may spend a little more.
    first = service.post("/api/v1/runs", json=llm_spec(llm_stub.url, rounds=1)).json()
    wait_for_run(service, first["id"], "completed")
    round_cost = service.get(f"/api/v1/runs/{first['id']}/usage").json()["total"]["tokens"]
    budget = {"tokens": round_cost + 2000}
    run = service.post("/api/v1/runs", json=llm_spec(llm_stub.url, rounds=1, budget=budget)).json()
    assert wait_for_run(service, run["id"], "completed", "paused")["status"] == "completed"
    survey = survey_of(service, run["id"], {"questions": [NUMBER]})
    # Its first batch spends more than 2,000 tokens: the next one is not asked.
    assert survey["status"] == "budget"
    assert survey["answered"] == BATCH
    assert survey["error"].startswith("the token budget is spent")
    again = service.post(f"/api/v1/runs/{run['id']}/surveys", json={"questions": [NUMBER]})
    assert again.status_code == 409
    assert "raise its budget first" in again.json()["detail"]


def test_a_survey_stopped_with_its_process_ends_interrupted_with_its_answers_so_far(service, llm_stub):
    run = service.post("/api/v1/runs", json=llm_spec(llm_stub.url, rounds=1)).json()
    wait_for_run(service, run["id"], "completed")
    llm_stub.config.latency = 0.2  # 300 agents, 64 at once: a batch of 128 takes about 0.4 s
    before = llm_stub.served.prompt_tokens + llm_stub.served.completion_tokens
    created = service.post(f"/api/v1/runs/{run['id']}/surveys", json={"questions": [NUMBER]}).json()
    url = f"/api/v1/runs/{run['id']}/surveys/{created['id']}"
    wait_for(lambda: service.get(url).json()["answered"] >= BATCH, "a batch of answers")
    service.portal.call(services.stop_surveys)  # what the service does as it shuts down
    stopped = service.get(url).json()
    assert (stopped["status"], stopped["error"]) == ("interrupted", "the process asking it stopped")
    assert BATCH <= stopped["answered"] < 300
    # The run pays for the answers stored, and for the calls of the batch cut short.
    answers = service.get(f"{url}/answers", params={"limit": 1000}).json()
    stored = sum(a["tokens"] for a in answers["data"])
    billed = service.get(f"/api/v1/runs/{run['id']}/usage").json()["surveys"]["tokens"]
    served = llm_stub.served.prompt_tokens + llm_stub.served.completion_tokens - before
    assert stored <= billed <= served  # a reply the stub sent as the call was cut is not billed


def test_kinds_without_a_survey_hook_are_skipped_with_the_reason(service):
    spec = spec_data(**SOCIAL | {"population.total": 200, "rounds": 1})
    run = service.post("/api/v1/runs", json=spec).json()
    wait_for_run(service, run["id"], "completed")
    survey = survey_of(service, run["id"], {"questions": [NUMBER], "sample": {"kinds": ["voter"]}})
    assert survey["status"] == "completed"
    question = survey["questions"][0]
    assert (question["answers"], question["skipped"], question["n"], question["mean"]) == (80, 80, 0, None)
    page = service.get(f"/api/v1/runs/{run['id']}/surveys/{survey['id']}/answers").json()
    assert {a["error"] for a in page["data"]} == {"skipped: rule-based kind voter has no survey hook"}
    assert sum(question["histogram"]["counts"]) == 0
