"""Myriad across hosts: a Ray head and three worker nodes, each in a network namespace of its own
with its own address, and the workflow service on this machine; runs are placed on every node,
and one that loses a node (its link cut) finishes with an undisturbed run's statistics."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.settings import Settings
from tests.conftest import API, TOKEN, spec_data
from tests.hosts import OWN_PIDS, hosts
from tests.waiting import wait_for

RAY = str(Path(sys.executable).with_name("ray"))
MYRIAD = str(Path(sys.executable).with_name("myriad"))
PORT = 6380
# A node whose link is cut is declared dead after a few seconds, not the default minute.
RAY_ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


LOGS: list[Path] = []  # the processes' output, shown when a wait times out


def until(check, timeout: float = 120, what: str = ""):
    """`wait_for`, with the processes' output when it times out."""

    def with_logs() -> str:
        tails = "\n".join(f"== {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in LOGS)
        return f"{what}\n{tails}"

    return wait_for(check, with_logs, timeout, every=0.3)


def ray_start(*options: str) -> list[str]:
    quiet = ["--include-dashboard=false"] if "--head" in options else []  # a head-only option
    return [RAY, "start", *options, *quiet, "--block"]


def listening(address: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((address, port)) == 0


@pytest.fixture(scope="module")
def cluster(postgres_url, redis_url):
    """(client of the API, hosts): the head on myr-h1, worker nodes on myr-h2..4, and a
    `myriad worker` on this machine (itself a node without CPUs, as a Ray driver must be)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        if os.environ.get("CI"):
            pytest.fail("the multi-host tests need root and iproute2 (`ip`)")
        pytest.skip("the multi-host tests need root and iproute2 (`ip`)")
    temp = Path(tempfile.mkdtemp(prefix="myriad-hosts-"))
    with hosts(5) as net:
        head, *workers, _ = net.names  # the last joins later
        gcs = f"{net.address[head]}:{PORT}"

        def node(name: str, address: str, *options: str) -> list[str]:
            (temp / name).mkdir()  # each node its own temp dir: they share one disk
            return ray_start(f"--node-ip-address={address}", f"--temp-dir={temp / name}", *options)

        net.start(
            head,
            node(head, net.address[head], "--head", f"--port={PORT}", "--num-cpus=0"),
            RAY_ENV,
            log=f"{temp}/{head}.log",
        )
        until(lambda: listening(net.address[head], PORT), what="the Ray head")
        for name in workers:
            net.start(
                name,
                node(name, net.address[name], f"--address={gcs}", "--num-cpus=1"),
                RAY_ENV,
                log=f"{temp}/{name}.log",
            )
        # The workflow service, as its container would run: a Ray node without CPUs (a driver
        # runs on a node of its cluster) and `myriad worker`, in a PID namespace of their own.
        here = os.environ | RAY_ENV | {"RAY_TMPDIR": str(temp / "driver")}
        service = here | {
            "DATABASE_URL": postgres_url,
            "REDIS_URL": redis_url,
            "RAY_ADDRESS": gcs,
            "MYRIAD_WORKER_ID": "hosts-worker",
            "MYRIAD_POLL_SECONDS": "0.2",
            "MYRIAD_LOG_LEVEL": "info",
        }
        join = " ".join(node("driver", net.gateway, f"--address={gcs}", "--num-cpus=0")).replace(
            " --block", ""
        )
        with open(temp / "worker.log", "wb") as log:
            worker = subprocess.Popen(
                [*OWN_PIDS, "sh", "-c", f"{join} && exec {MYRIAD} worker"],
                env=service,
                start_new_session=True,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        net.processes.append(worker)
        settings = Settings(database_url=postgres_url, redis_url=redis_url, token=TOKEN, serve_worker=False)
        with TestClient(create_app(settings), headers=API) as client:
            expected = {net.address[name] for name in workers}

            def reported() -> bool:
                return expected <= {n["address"] for n in client.get("/api/v1/cluster").json()["nodes"]}

            LOGS[:] = sorted(temp.glob("*.log"))
            until(reported, what="three worker nodes")
            yield client, net
    shutil.rmtree(temp, ignore_errors=True)


def survivor(name: str) -> dict:
    return spec_data(
        name=name,
        rounds=8,
        checkpoint_every=2,
        placement={"hosts": 3, "agent_timeout": 60},
        **{
            "population.total": 3_000,
            "population.kinds": [
                {"kind": "adaptive", "share": 50},
                {"kind": "probe", "share": 50, "params": {"delay": 0.3}},
            ],
        },
    )


def finished(client, run_id: int, timeout: float = 240) -> dict:
    final = ("completed", "failed", "stopped")
    return until(
        lambda: (r := client.get(f"/api/v1/runs/{run_id}").json())["status"] in final and r,
        timeout,
        f"run {run_id}",
    )


def test_a_run_is_placed_on_every_node_and_the_cluster_shows_them(cluster):
    client, net = cluster
    run = client.post("/api/v1/runs", json=survivor("placed")).json()
    until(lambda: client.get(f"/api/v1/runs/{run['id']}").json()["round"] >= 1, what="round 1")
    found = client.get("/api/v1/cluster").json()
    address = {n["node_id"]: n["address"] for n in found["nodes"]}
    hosts = [h for h in found["hosts"] if h["run_id"] == run["id"]]
    assert sorted(address[h["node_id"]] for h in hosts) == sorted(net.address[n] for n in net.names[1:4])
    assert all(n["cpus"] == 1 and n["memory_bytes"] > 0 for n in found["nodes"])
    assert all(h["agents"] == 1_000 for h in hosts)
    client.get(f"/login?token={TOKEN}")
    page = client.get("/cluster").text
    for name in net.names[1:4]:
        assert f"Node {net.address[name]}" in page
    assert finished(client, run["id"])["status"] == "completed"


def test_a_node_cut_off_mid_run_changes_nothing_in_the_results(cluster):
    client, net = cluster
    undisturbed = client.post("/api/v1/runs", json=survivor("undisturbed")).json()
    assert finished(client, undisturbed["id"])["status"] == "completed"
    run = client.post("/api/v1/runs", json=survivor("cut")).json()
    until(lambda: client.get(f"/api/v1/runs/{run['id']}").json()["round"] >= 3, what="round 3")
    net.cut(net.names[3])  # its link goes down; its processes go on, unreachable
    done = finished(client, run["id"])
    assert done["status"] == "completed", done["error"]
    events = client.get(f"/api/v1/runs/{run['id']}/events", params={"limit": 1000}).json()["data"]
    kinds = [e["kind"] for e in events]
    assert "node lost" in kinds
    assert "recovered" in kinds
    rounds = client.get(f"/api/v1/runs/{run['id']}/rounds").json()["data"]
    expected = client.get(f"/api/v1/runs/{undisturbed['id']}/rounds").json()["data"]
    assert [r["round"] for r in rounds] == list(range(1, 9))
    assert [r["stats"] for r in rounds] == [r["stats"] for r in expected]


def test_a_node_that_joins_takes_hosts_of_the_next_run(cluster, tmp_path):
    client, net = cluster
    newcomer = net.names[4]
    short = Path(tempfile.mkdtemp(prefix="myr-"))  # Ray's socket paths must stay under 108 bytes
    gcs = f"{net.address[net.names[0]]}:{PORT}"
    options = [
        "--cpus",
        "2",
        "--ip",
        net.address[newcomer],
        "--temp-dir",
        str(short),
    ]
    log = tmp_path / f"{newcomer}.log"
    LOGS.append(log)
    net.start(newcomer, [MYRIAD, "node", "join", gcs, *options], RAY_ENV, log=str(log))
    until(
        lambda: (
            net.address[newcomer] in {n["address"] for n in client.get("/api/v1/cluster").json()["nodes"]}
        ),
        what="the new node",
    )
    spec = survivor("after joining") | {"rounds": 2, "placement": {"hosts": 4, "agent_timeout": 60}}
    run = client.post("/api/v1/runs", json=spec).json()
    until(lambda: client.get(f"/api/v1/runs/{run['id']}").json()["status"] == "running", what="the run")
    found = until(
        lambda: (
            (c := client.get("/api/v1/cluster").json())["hosts"]
            and [h for h in c["hosts"] if h["run_id"] == run["id"]]
            and c
        ),
        what="its hosts",
    )
    address = {n["node_id"]: n["address"] for n in found["nodes"]}
    placed = [address[h["node_id"]] for h in found["hosts"] if h["run_id"] == run["id"]]
    # Free CPUs: the newcomer 2, the two nodes left 1 each: it takes two of the four hosts.
    assert placed.count(net.address[newcomer]) == 2
    assert finished(client, run["id"])["status"] == "completed"
    shutil.rmtree(short, ignore_errors=True)
