"""A device joining mid-run (`myriad node join`) takes the hosts of the next run: placement goes
by free CPUs, and the nodes already carry a run."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import ray
from fastapi.testclient import TestClient

from agents.placement import alive_nodes
from tests.conftest import API, driving_app, driving_settings, spec_data
from tests.waiting import wait_for, wait_for_run

MYRIAD = str(Path(sys.executable).with_name("myriad"))


def slow(name: str, hosts: int) -> dict:
    probes = [{"kind": "probe", "share": 100, "params": {"delay": 0.3}}]
    return spec_data(name=name, rounds=300, placement={"hosts": hosts}, **{"population.kinds": probes})


def test_a_joining_node_takes_the_next_runs_hosts(tmp_path, redis_url, ray_cluster):
    settings = driving_settings(f"sqlite:///{tmp_path / 'join.db'}", redis_url)
    before = {n.node_id for n in alive_nodes()}
    address = ray.get_runtime_context().gcs_address
    second = settings.model_copy(update={"worker_id": "second-worker"})  # a worker drives one run
    with TestClient(driving_app(settings), headers=API) as client, TestClient(driving_app(second)):
        busy = client.post("/api/v1/runs", json=slow("busy", hosts=3)).json()
        wait_for_run(client, busy["id"], done=lambda run: run["round"] >= 1, what="round 1", timeout=60)
        joining = subprocess.Popen(
            [MYRIAD, "node", "join", address, "--cpus", "2"],
            start_new_session=True,  # its raylet and workers: one group to stop
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            joined = wait_for(
                lambda: {n.node_id for n in alive_nodes()} - before, "the node to join", every=0.2
            )
            (new_node,) = joined
            fresh = client.post("/api/v1/runs", json=slow("fresh", hosts=2)).json()

            def placed() -> set:
                hosts = client.get("/api/v1/cluster").json()["hosts"]
                return {h["node_id"] for h in hosts if h["run_id"] == fresh["id"]}

            # Both hosts on the only node with free CPUs.
            assert wait_for(placed, "the fresh run's hosts", every=0.2) == {new_node}
            nodes = client.get("/api/v1/cluster").json()["nodes"]
            assert new_node in {n["node_id"] for n in nodes}
            for run in (busy, fresh):
                client.post(f"/api/v1/runs/{run['id']}/stop")
            wait_for_run(client, fresh["id"], "stopped", timeout=60)
        finally:
            os.killpg(joining.pid, signal.SIGTERM)
            joining.wait(timeout=30)
    wait_for(lambda: new_node not in {n.node_id for n in alive_nodes()}, "the node to leave", 90, every=0.2)
