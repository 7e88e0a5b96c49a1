"""A node lost mid-run: the workflow service places its agents on the nodes left and goes on
from the last checkpoint, and the run ends with the statistics of an undisturbed run."""

from fastapi.testclient import TestClient

from agents.placement import alive_nodes
from tests.conftest import API, driving_app, driving_settings, spec_data
from tests.waiting import wait_for_run


def test_a_node_lost_mid_run_changes_nothing_in_the_results(tmp_path, redis_url, ray_cluster):
    spec = spec_data(
        name="survivor",
        rounds=8,
        checkpoint_every=2,
        placement={"hosts": 4, "agent_timeout": 30},
        **{
            "population.total": 2_000,
            "population.kinds": [
                {"kind": "adaptive", "share": 50},  # keeps state: a resume must restore it
                {"kind": "probe", "share": 50, "params": {"delay": 0.2}},  # rounds slow enough to cut in
            ],
        },
    )
    extra = ray_cluster.add_node(num_cpus=1)  # the node to lose: the others serve the whole session
    ray_cluster.wait_for_nodes()
    settings = driving_settings(f"sqlite:///{tmp_path / 'recovery.db'}", redis_url)
    with TestClient(driving_app(settings), headers=API) as client:
        undisturbed = client.post("/api/v1/runs", json=spec | {"name": "undisturbed"}).json()
        wait_for_run(client, undisturbed["id"], "completed")
        run = client.post("/api/v1/runs", json=spec).json()
        wait_for_run(client, run["id"], done=lambda r: r["round"] >= 3, what="round 3", every=0.1)
        hosts = {
            h["node_id"] for h in client.get("/api/v1/cluster").json()["hosts"] if h["run_id"] == run["id"]
        }
        assert extra.node_id in hosts  # the run does have hosts on the node about to go
        ray_cluster.remove_node(extra)  # its raylet and every worker on it are killed
        done = wait_for_run(client, run["id"], "completed", "failed")
        events = client.get(f"/api/v1/runs/{run['id']}/events", params={"limit": 1000}).json()["data"]
        rounds = client.get(f"/api/v1/runs/{run['id']}/rounds").json()["data"]
        expected = client.get(f"/api/v1/runs/{undisturbed['id']}/rounds").json()["data"]
        placed = [
            agent
            for offset in range(0, 2_000, 500)
            for agent in client.get(
                f"/api/v1/runs/{run['id']}/agents", params={"limit": 500, "offset": offset}
            ).json()["data"]
        ]
    assert done["status"] == "completed", done["error"]
    kinds = [e["kind"] for e in events]
    assert "node lost" in kinds
    assert "recovered" in kinds
    lost = next(e for e in events if e["kind"] == "node lost")
    assert lost["payload"]["nodes"] == [extra.node_id]
    assert [r["round"] for r in rounds] == list(range(1, 9))
    assert [r["stats"] for r in rounds] == [r["stats"] for r in expected]
    assert [r["details"]["histogram"] for r in rounds] == [r["details"]["histogram"] for r in expected]
    alive = {n.node_id for n in alive_nodes()}
    assert len(placed) == 2_000
    assert {a["node"] for a in placed} <= alive  # the stored hosts say where they are now
