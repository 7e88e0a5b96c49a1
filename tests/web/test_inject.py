"""Injecting into a run from its page: the filter checked against the run's population beside
its field, how many agents it matches as it is typed, and how many a message reached once
delivered (the worker counts them where they are delivered)."""

import re

import pytest
from fastapi.testclient import TestClient

from tests.conftest import API, csrf_of, driving_app, driving_settings, sign_in, spec_data
from tests.waiting import wait_for_run


@pytest.fixture(scope="module")
def delivered(tmp_path_factory, redis_url, ray_cluster):
    """(signed-in client, run) for a 1,000-agent run that was sent a message to the women and a
    piece of public information before it started."""
    settings = driving_settings(f"sqlite:///{tmp_path_factory.mktemp('inject') / 'site.db'}", redis_url)
    with TestClient(driving_app(settings), follow_redirects=False) as client:
        sign_in(client)
        run = client.post("/api/v1/runs", json=spec_data(placement={"hosts": 2}), headers=API).json()
        for sent in (
            {"content": "Most answer low.", "where": {"gender": "female"}},
            {"content": "Rates fall.", "public": True},
        ):
            assert client.post(f"/api/v1/runs/{run['id']}/inject", json=sent, headers=API).status_code == 202
        wait_for_run(client, run["id"], "completed", headers=API)
        yield client, run


def test_the_run_records_how_many_agents_each_injection_reached(delivered):
    client, run = delivered
    events = client.get(f"/api/v1/runs/{run['id']}/events", headers=API).json()["data"]
    found = sorted(
        (e["round"], e["payload"]["content"], e["payload"]["reached"])
        for e in events
        if e["kind"] == "delivered"
    )
    assert found == [(1, "Most answer low.", 500), (1, "Rates fall.", 1000)]  # delivered in round 1, once
    page = client.get(f"/runs/{run['id']}").text
    feed = " ".join(page[page.index('id="feed"') :].split())
    assert "“Most answer low.” reached 500 agents with gender=female" in feed
    assert "“Rates fall.” reached 1,000 agents as public information" in feed


def test_the_filter_says_how_many_agents_it_matches_as_it_is_typed(delivered):
    client, run = delivered
    url = f"/runs/{run['id']}/inject/reach"
    women = client.get(url, params={"where": "gender=female"})
    assert women.template.name == "run_inject_reach.html"
    assert "Matches 500 of 1,000 agents." in women.text
    both = client.get(
        f"/api/v1/runs/{run['id']}/agents",
        params={"attribute": ["gender=female", "education=school"]},
        headers=API,
    ).json()["count"]
    assert (
        f"Matches {both:,} of 1,000 agents."
        in client.get(url, params={"where": "gender=female, education=school"}).text
    )
    assert "Empty: every agent (all 1,000)." in client.get(url, params={"where": " "}).text
    for where, problem in [
        ("planet=mars", "where.planet: the population has no attribute &#39;planet&#39;"),
        ("gender=alien", "where.gender: no agent has gender=&#39;alien&#39;"),
        ("gender", "“gender” is not ATTR=VALUE"),
    ]:
        answer = client.get(url, params={"where": where})
        assert answer.status_code == 200
        assert re.search(r'<span class="field-error">([^<]*)</span>', answer.text)[1].startswith(problem), (
            answer.text
        )


def test_the_form_says_what_is_wrong_beside_each_field(member):
    run = member.post("/api/v1/runs", json=spec_data(), headers=API).json()  # queued: no worker here
    page = member.get(f"/runs/{run['id']}").text
    assert 'hx-get="http://testserver/runs/1/inject/reach"' in page  # the count follows the filter
    assert "Empty: every agent (all 1,000)." in page
    csrf = {"X-CSRF-Token": csrf_of(page)}
    both = member.post(
        f"/runs/{run['id']}/inject", data={"content": " ", "where": "planet=mars"}, headers=csrf
    )
    assert both.status_code == 422
    content = re.search(r'id="err-inject-content"[^>]*>([^<]*)<', both.text)[1]
    where = re.search(r'id="inject-reach"[^>]*><span class="field-error">([^<]*)<', both.text)[1]
    assert content == "write something to deliver"
    assert where.startswith("where.planet: the population has no attribute")
    assert both.text.count('aria-invalid="true"') == 2
    # A queued run's agents are not dealt out yet: the filter is checked, not counted.
    queued = member.get(f"/runs/{run['id']}/inject/reach", params={"where": "gender=female"}).text
    assert "how many agents it matches is known once the run has started" in queued
