"""Agents, events and cluster routes, on a run the embedded service drove itself."""

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TOKEN, driving_app, driving_settings, module_database, spec_data
from tests.waiting import wait_for_run


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def finished(request, tmp_path_factory, redis_url, ray_cluster):
    """(client, run) for a 1,000-agent, 3-round run, completed by the app's own worker."""
    database_url = module_database(request, tmp_path_factory, "agents")
    settings = driving_settings(database_url, redis_url)
    with TestClient(driving_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        run = client.post("/api/v1/runs", json=spec_data(rounds=3, placement={"hosts": 2})).json()
        news = {"content": "The mean fell.", "public": True}
        assert client.post(f"/api/v1/runs/{run['id']}/inject", json=news).status_code == 202
        wait_for_run(client, run["id"], "completed")
        yield client, run


def agents(client, run, **params) -> dict:
    response = client.get(f"/api/v1/runs/{run['id']}/agents", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_agents_are_paged(finished):
    client, run = finished
    page = agents(client, run, limit=10, offset=20)
    assert page["count"] == 1000
    assert [a["agent_id"] for a in page["data"]] == list(range(20, 30))
    assert {a["host"] for a in agents(client, run, limit=500)["data"]} == {0}
    assert agents(client, run, host=1, limit=1)["count"] == 500


def test_agents_filter_by_kind_attribute_and_name(finished):
    client, run = finished
    level2 = agents(client, run, kind="level_k(k=2)", limit=500)
    assert level2["count"] == 200
    assert {a["kind"] for a in level2["data"]} == {"level_k(k=2)"}
    women = agents(client, run, attribute="gender=female", limit=500)
    assert women["count"] == 500
    everyone = agents(client, run, limit=500)["data"] + agents(client, run, limit=500, offset=500)["data"]
    expected = sum(a["attributes"] == {"gender": "female", "education": "university"} for a in everyone)
    both = agents(client, run, attribute=["gender=female", "education=university"])
    assert both["count"] == expected
    assert all(a["attributes"]["education"] == "university" for a in both["data"])
    first = agents(client, run, limit=1)["data"][0]
    named = agents(client, run, name=first["name"].split()[0])
    assert named["count"] >= 1
    assert all(a["name"].startswith(first["name"].split()[0]) for a in named["data"])
    by_name = agents(client, run, sort="name", limit=5)["data"]
    assert [a["name"] for a in by_name] == sorted(a["name"] for a in by_name)
    assert agents(client, run, failed=True)["count"] == 0


def test_bad_agent_queries_are_422s(finished):
    client, run = finished
    for params in ({"attribute": "gender"}, {"sort": "age"}, {"limit": 1000}):
        assert client.get(f"/api/v1/runs/{run['id']}/agents", params=params).status_code == 422


def test_one_agent_with_its_answers_and_an_interview(finished):
    client, run = finished
    agent = client.get(f"/api/v1/runs/{run['id']}/agents/7").json()
    assert agent["agent_id"] == 7
    assert agent["background"].startswith(agent["name"])
    assert [a["round"] for a in agent["actions"]] == [1, 2, 3]
    assert all(0 <= a["value"] <= 100 for a in agent["actions"])
    assert agent["messages"] == [{"round": 1, "content": "The mean fell.", "public": True}]
    answer = client.post(f"/api/v1/runs/{run['id']}/agents/7/interview", json={"question": "Why?"}).json()
    assert agent["name"] in answer["answer"]
    assert "round 3:" in answer["answer"]
    missing = client.get(f"/api/v1/runs/{run['id']}/agents/5000")
    assert missing.json() == {"detail": f"agent 5000 not found in run {run['id']}", "errors": []}


def test_events_and_cluster(finished):
    client, run = finished
    events = client.get(f"/api/v1/runs/{run['id']}/events").json()
    kinds = [e["kind"] for e in events["data"]][::-1]  # newest first
    assert kinds[:2] == ["queued", "started"]  # every event is stored, from the first
    assert kinds.count("round") == 3
    assert "completed" in kinds
    cluster = client.get("/api/v1/cluster").json()
    assert len(cluster["nodes"]) == 3
    assert all(n["cpus"] == 1 for n in cluster["nodes"])
