"""A run's surveys on the dashboard: the form (questions, sample, errors beside their fields), the
survey's page (live while asked, a chart per question, broken down, downloads)."""

import json
import re

import pytest
from fastapi.testclient import TestClient

from tests.conftest import API, csrf_of, driving_app, driving_settings, sign_in, spec_data
from tests.waiting import wait_for, wait_for_run


@pytest.fixture(scope="module")
def finished(tmp_path_factory, redis_url, ray_cluster):
    """(signed-in client, run) for the base spec's 1,000 rule-based agents over 2 rounds."""
    settings = driving_settings(f"sqlite:///{tmp_path_factory.mktemp('surveys') / 'site.db'}", redis_url)
    with TestClient(driving_app(settings), follow_redirects=False) as client:
        sign_in(client)
        run = client.post("/api/v1/runs", json=spec_data(rounds=2), headers=API).json()
        wait_for_run(client, run["id"], "completed", headers=API)
        yield client, run


def form(csrf: str, **fields: str) -> dict[str, str]:
    empty = {f"q{i}_{f}": "" for i in range(3) for f in ("text", "type", "min", "max", "options")}
    return {"csrf": csrf, "name": "", "sample": "all", "random": "100"} | empty | fields


def charts_of(html: str) -> list[dict]:
    found = re.findall(r'<script type="application/json" class="chart-data">(.*?)</script>', html, re.S)
    return [json.loads(f) for f in found]


def test_the_run_page_links_to_a_new_survey(finished):
    client, run = finished
    page = client.get(f"/runs/{run['id']}").text
    assert f'href="http://testserver/runs/{run["id"]}/surveys/new"' in page
    new = client.get(f"/runs/{run['id']}/surveys/new")
    assert new.status_code == 200
    assert new.text.count("<legend>Question") == 3
    assert f'action="http://testserver/runs/{run["id"]}/surveys/new"' in new.text  # not the API's route
    assert '<option value="">any</option>' in new.text  # the filter offers the run's attributes
    assert re.search(r"<option\s*>level_k\(k=1\)</option>", new.text)  # and its kinds


def test_a_survey_from_the_form_lands_on_its_page_with_a_chart_per_question(finished):
    client, run = finished
    csrf = csrf_of(client.get(f"/runs/{run['id']}/surveys/new").text)
    fields = form(
        csrf,
        name="guesses",
        q0_text="What will you guess next?", q0_type="number", q0_min="0", q0_max="100",
        q1_text="Will the mean fall?", q1_type="choice", q1_options="Yes\nNo\n",
        sample="filter", where_gender="female",
    )  # fmt: skip
    created = client.post(f"/runs/{run['id']}/surveys/new", data=fields)
    assert created.status_code == 303, created.text
    url = created.headers["location"]
    assert re.fullmatch(rf"http://testserver/runs/{run['id']}/surveys/\d+", url)
    page = wait_for(lambda: 'hx-trigger="every 1s"' not in (p := client.get(url).text) and p, "its end")
    assert "<strong>completed</strong> · 1,000 of 1,000 answers" in page
    number, choice = charts_of(page)
    assert number["x"] == "answer"
    assert len(number["labels"]) == 20
    assert [s["label"] for s in number["sets"]] == ["all agents"]
    assert sum(number["sets"][0]["counts"]) == 500
    assert choice == {
        "labels": ["Yes", "No"],
        "x": "option",
        "sets": [{"label": "all agents", "counts": [0, 0]}],
    }
    assert "500 skipped" in page
    # Broken down by kind: one set of bars per kind (a fragment when the select asks for it).
    part = client.get(url, params={"by": "kind"}, headers={"HX-Request": "true", "HX-Target": "survey-live"})
    assert "<html" not in part.text
    assert '<div id="survey-live"' in part.text
    sets = charts_of(part.text)[0]["sets"]
    assert [s["label"] for s in sets] == sorted(s["label"] for s in sets)
    assert len(sets) == 5
    assert sum(sum(s["counts"]) for s in sets) == 500
    download = client.get(f"{url}/export", params={"format": "csv"})
    assert download.status_code == 200
    assert len(download.text.strip().splitlines()) == 1 + 1000
    survey_id = url.rsplit("/", 1)[1]
    feed = client.get(f"/runs/{run['id']}").text  # the run's feed says what was asked
    assert f"survey {survey_id}</a> “guesses”: 2 questions to 500 agents, completed" in feed
    listed = client.get(f"/runs/{run['id']}/surveys/new").text
    assert "“guesses”</a>" in listed  # among the run's surveys


def test_the_form_says_what_is_wrong_beside_each_field(finished):
    client, run = finished
    csrf = csrf_of(client.get(f"/runs/{run['id']}/surveys/new").text)
    fields = form(
        csrf,
        q1_text="How many?", q1_type="number", q1_min="10", q1_max="five",
        q2_text="Which?", q2_type="choice", q2_options="Only one",
        sample="random", random="0",
    )  # fmt: skip
    refused = client.post(f"/runs/{run['id']}/surveys/new", data=fields)
    assert refused.status_code == 422
    errors = dict(re.findall(r'<span class="field-error" id="err-([\w-]+)">([^<]+)</span>', refused.text))
    assert errors == {
        "q1-max": "Input should be a valid number",
        "q2-options": "List should have at least 2 items after validation, not 1",
        "sample-random": "Input should be greater than or equal to 1",
    }
    assert "five" in refused.text  # what was typed comes back
    more = client.post(f"/runs/{run['id']}/surveys/new/more", data=fields)
    assert more.status_code == 200
    assert more.text.count("<legend>Question") == 4
    assert "How many?" in more.text
    nobody = client.post(f"/runs/{run['id']}/surveys/new", data=form(csrf))
    assert nobody.status_code == 422
    assert "at least 1 item" in nobody.text
    forged = client.post(f"/runs/{run['id']}/surveys/new", data=form("forged", q0_text="Why?"))
    assert forged.status_code == 403
