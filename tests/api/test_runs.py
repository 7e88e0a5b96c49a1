import csv
import io

import pytest
from fastapi.testclient import TestClient

from tests.conftest import SOCIAL, TOKEN, driving_app, spec_data
from tests.waiting import wait_for_run


@pytest.fixture(autouse=True)
def fresh_live_layer(client):
    import redis

    redis.Redis.from_url(client.app.state.runtime.live.url).flushdb()


def create(client, **changes) -> dict:
    response = client.post("/api/v1/runs", json=spec_data(**changes))
    assert response.status_code == 201, response.text
    return response.json()


def test_healthz_is_open(client):
    assert client.get("/healthz", headers={"Authorization": ""}).json() == {"status": "ok"}


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Basic dGVzdA=="])
def test_every_api_route_needs_the_token(client, header):
    headers = {"Authorization": header} if header else {"Authorization": ""}
    response = client.get("/api/v1/runs", headers=headers)
    assert response.status_code == 401
    assert response.json()["detail"].startswith("missing or wrong token")
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_create_list_and_read_a_run(client):
    run = create(client, name="api run")
    assert (run["name"], run["status"], run["agents"], run["round"]) == ("api run", "queued", 1000, 0)
    assert run["live"]["status"] == "queued"
    assert run["spec"]["scenario"]["params"]["ratio"] == "2/3"
    listed = client.get("/api/v1/runs").json()
    assert listed["count"] == 1
    assert [r["id"] for r in listed["data"]] == [run["id"]]
    assert client.get(f"/api/v1/runs/{run['id']}").json()["name"] == "api run"
    assert client.get("/api/v1/runs", params={"status": "completed"}).json() == {"data": [], "count": 0}


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"population.total": 0}, "population.total", "greater than or equal to 1"),
        ({"scenario.name": "chess"}, "scenario", "unknown scenario 'chess'"),
        ({"population.attributes.gender": {"f": 50, "m": 40}}, "population.attributes", "add up to 90"),
        ({"rounds": "many"}, "rounds", "valid integer"),
        ({"placement": {"hosts": 1001}}, "placement.hosts", "1001 hosts for 1000 agents"),
        (SOCIAL | {"population.total": 5}, "scenario.params.seeds", "10 seeds for 5 agents"),
    ],
)
def test_a_bad_spec_is_a_422_naming_the_field(client, changes, field, message):
    response = client.post("/api/v1/runs", json=spec_data(**changes))
    assert response.status_code == 422
    body = response.json()
    assert any(e["field"] == field and message in e["message"] for e in body["errors"]), body
    assert body["detail"].startswith("invalid input: ")


def test_bad_query_and_path_values_are_422s(client):
    assert client.get("/api/v1/runs", params={"limit": 0}).json()["errors"][0]["field"] == "query.limit"
    assert client.get("/api/v1/runs/abc").json()["errors"][0]["field"] == "path.run_id"
    assert client.get("/api/v1/runs", params={"status": "dancing"}).status_code == 422


def test_unknown_runs_are_404s(client):
    for method, path in [
        ("get", "/api/v1/runs/999"),
        ("post", "/api/v1/runs/999/pause"),
        ("get", "/api/v1/runs/999/rounds"),
        ("delete", "/api/v1/runs/999"),
    ]:
        response = client.request(method, path)
        assert response.status_code == 404
        assert response.json() == {"detail": "run 999 not found", "errors": []}


def test_control_follows_the_lifecycle(client):
    run = create(client)
    paused = client.post(f"/api/v1/runs/{run['id']}/pause")
    assert paused.status_code == 409
    assert paused.json()["detail"] == f"run {run['id']} is queued; it cannot become paused"
    stopped = client.post(f"/api/v1/runs/{run['id']}/stop")
    assert (stopped.status_code, stopped.json()["status"]) == (202, "stopped")
    assert client.post(f"/api/v1/runs/{run['id']}/resume").status_code == 409


def test_inject_validates_its_body(client):
    run = create(client)
    assert (
        client.post(f"/api/v1/runs/{run['id']}/inject", json={"content": "news", "public": True}).status_code
        == 202
    )
    bad = client.post(f"/api/v1/runs/{run['id']}/inject", json={"content": ""})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "content"
    nobody = client.post(
        f"/api/v1/runs/{run['id']}/inject", json={"content": "hi", "where": {"planet": "mars"}}
    )
    assert nobody.status_code == 422
    assert nobody.json()["errors"][0]["field"] == "where.planet"


def test_delete_and_export(client):
    run = create(client)
    assert client.get(f"/api/v1/runs/{run['id']}/rounds").json() == {"data": [], "count": 0}
    exported = client.get(f"/api/v1/runs/{run['id']}/export", params={"table": "agents", "format": "csv"})
    assert exported.status_code == 200
    assert exported.headers["content-disposition"] == f'attachment; filename="run-{run["id"]}-agents.csv"'
    assert client.get(f"/api/v1/runs/{run['id']}/export", params={"format": "xls"}).status_code == 422
    assert client.delete(f"/api/v1/runs/{run['id']}").status_code == 204
    assert client.get(f"/api/v1/runs/{run['id']}").status_code == 404


@pytest.mark.usefixtures("ray_cluster")
def test_a_worker_beside_the_service_drives_its_runs(api_settings):
    settings = api_settings.model_copy(update={"poll_seconds": 0.2})
    with TestClient(driving_app(settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        run = create(client, rounds=3, placement={"hosts": 2})
        current = wait_for_run(client, run["id"], "completed")
        assert current["live"]["round"] == 3
        rounds = client.get(f"/api/v1/runs/{run['id']}/rounds").json()
        assert [r["round"] for r in rounds["data"]] == [1, 2, 3]
        assert len(rounds["data"][0]["details"]["histogram"]) == 101
        exported = client.get(f"/api/v1/runs/{run['id']}/export")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [int(r["round"]) for r in rows] == [1, 2, 3]
        assert float(rows[0]["win"]) == rounds["data"][0]["stats"]["win"]
