"""A device joining mid-run (`myriad node join`) takes the hosts of the next run: placement goes
by free CPUs, and the nodes already carry a run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import ray
from fastapi.testclient import TestClient

from agents.placement import alive_nodes
from tests.conftest import TOKEN, driving_app, driving_settings, spec_data

API = {"Authorization": f"Bearer {TOKEN}"}
MYRIAD = str(Path(sys.executable).with_name("myriad"))


def slow(name: str, hosts: int) -> dict:
    probes = [{"kind": "probe", "share": 100, "params": {"delay": 0.3}}]
    return spec_data(name=name, rounds=300, placement={"hosts": hosts}, **{"population.kinds": probes})


def until(check, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    return found


def test_a_joining_node_takes_the_next_runs_hosts(tmp_path, redis_url, ray_cluster):
    settings = driving_settings(f"sqlite:///{tmp_path / 'join.db'}", redis_url)
    before = {n.node_id for n in alive_nodes()}
    address = ray.get_runtime_context().gcs_address
    second = settings.model_copy(update={"worker_id": "second-worker"})  # a worker drives one run
    with TestClient(driving_app(settings), headers=API) as client, TestClient(driving_app(second)):
        busy = client.post("/api/v1/runs", json=slow("busy", hosts=3)).json()
        until(lambda: client.get(f"/api/v1/runs/{busy['id']}").json()["round"] >= 1)
        joining = subprocess.Popen(
            [MYRIAD, "node", "join", address, "--cpus", "2"],
            start_new_session=True,  # its raylet and workers: one group to stop
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            joined = until(lambda: {n.node_id for n in alive_nodes()} - before)
            (new_node,) = joined
            fresh = client.post("/api/v1/runs", json=slow("fresh", hosts=2)).json()

            def placed() -> set:
                hosts = client.get("/api/v1/cluster").json()["hosts"]
                return {h["node_id"] for h in hosts if h["run_id"] == fresh["id"]}

            assert until(placed) == {new_node}  # both hosts on the only node with free CPUs
            nodes = client.get("/api/v1/cluster").json()["nodes"]
            assert new_node in {n["node_id"] for n in nodes}
            for run in (busy, fresh):
                client.post(f"/api/v1/runs/{run['id']}/stop")
            until(lambda: client.get(f"/api/v1/runs/{fresh['id']}").json()["status"] == "stopped")
        finally:
            os.killpg(joining.pid, signal.SIGTERM)
            joining.wait(timeout=30)
    until(lambda: new_node not in {n.node_id for n in alive_nodes()}, timeout=90)
