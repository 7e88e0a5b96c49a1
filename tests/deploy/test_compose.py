"""`docker compose up` for real: the project's Dockerfile and compose.yaml, unchanged, on a
container engine the test prepares itself (tests/deploy/engine.py). The stack is used only as a
user would: through the REST API with the token from .env, and `docker compose` commands. Each
step's time goes to test-artifacts/deploy.txt."""

from __future__ import annotations

import contextlib
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import missing
from tests.deploy.engine import STANDINS, Engine, engine
from tests.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
PROJECT = "myriad-deploy-test"
PORT = 18731
ARTIFACT = REPO / "test-artifacts" / "deploy.txt"
# Rounds that last (30 % of the agents wait 1.5 s), checkpoints every other round.
SPEC: dict[str, Any] = {
    "name": "deploy",
    "scenario": {"name": "guess_two_thirds", "params": {"ratio": "2/3", "max_value": 100}},
    "rounds": 8,
    "seed": 2026,
    "checkpoint_every": 2,
    "population": {
        "total": 30_000,
        "kinds": [
            {"kind": "probe", "share": 30, "params": {"delay": 1.5}},
            {"kind": "level_k", "share": 40, "params": {"k": 1}},
            {"kind": "adaptive", "share": 30},
        ],
    },
}


def _log(line: str) -> None:
    ARTIFACT.parent.mkdir(exist_ok=True)
    with ARTIFACT.open("a") as f:
        f.write(line + "\n")


class Stack:
    """The compose project in a copy of the checkout, with its generated .env."""

    def __init__(self, engine: Engine, folder: Path) -> None:
        self.engine = engine
        self.folder = folder
        self.token = secrets.token_hex(24)
        self.api = httpx.Client(
            base_url=f"http://127.0.0.1:{PORT}/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )

    def write_env(self) -> None:
        settings = {
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "REDIS_PASSWORD": secrets.token_hex(16),
            "RAY_AUTH_TOKEN": secrets.token_hex(32),
            "MYRIAD_TOKEN": self.token,
            "MYRIAD_PORT": str(PORT),
            "MYRIAD_BUILD_NETWORK": "host",  # the daemon runs without iptables: no NAT for builds
            "MYRIAD_BUILD_CA": "/etc/ssl/certs/ca-certificates.crt",
            **STANDINS,
        }
        (self.folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))

    def compose(self, *args: str, timeout: float = 600) -> str:
        return self.engine.docker("compose", "-p", PROJECT, *args, timeout=timeout, cwd=self.folder)

    def timed(self, what: str, *args: str, timeout: float = 600) -> str:
        start = time.monotonic()
        out = self.compose(*args, timeout=timeout)
        _log(f"{what}: {time.monotonic() - start:.1f} s (docker compose {' '.join(args)})")
        return out

    def run(self, spec: dict[str, Any]) -> int:
        response = self.api.post("/runs", json=spec)
        assert response.status_code == 201, response.text
        return int(response.json()["id"])

    def status(self, run_id: int) -> dict[str, Any]:
        return self.api.get(f"/runs/{run_id}").json()

    def wait(
        self, run_id: int, done: Callable[[dict[str, Any]], bool], timeout: float = 300
    ) -> dict[str, Any]:
        last: dict[str, Any] | None = None

        def reached() -> dict[str, Any] | None:
            nonlocal last
            try:
                last = self.status(run_id)
            except httpx.HTTPError:  # the API restarting, say: ask again
                return None
            assert last["status"] != "failed", last["error"]
            return last if done(last) else None

        return wait_for(reached, lambda: f"run {run_id} to get there; last seen: {last}", timeout, every=0.5)

    def stats(self, run_id: int) -> list[dict[str, Any]]:
        return [
            r["stats"] | {"round": r["round"]} for r in self.api.get(f"/runs/{run_id}/rounds").json()["data"]
        ]

    def events(self, run_id: int) -> list[str]:
        return [
            e["kind"] for e in self.api.get(f"/runs/{run_id}/events", params={"limit": 1000}).json()["data"]
        ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("deploy")
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):  # a checkout as a user has it
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, target)
    ARTIFACT.unlink(missing_ok=True)
    with contextlib.ExitStack() as cleanup:
        try:
            ready = cleanup.enter_context(engine())
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            missing("a container engine", error)  # CI fails; a developer's machine skips
        built = Stack(ready, folder)
        cleanup.callback(built.api.close)
        built.write_env()
        # Whatever happens, nothing of the project is left behind.
        cleanup.callback(
            subprocess.run,
            ["docker", "compose", "-p", PROJECT, "down", "-v", "--remove-orphans", "--timeout", "10"],
            cwd=folder, env=ready.env, capture_output=True, timeout=300,
        )  # fmt: skip
        yield built


def test_the_stack_builds_runs_across_worker_containers_and_survives_faults(stack: Stack):
    stack.timed("build", "build")
    stack.timed("up, healthy", "up", "-d", "--wait", "--scale", "ray-worker=2", timeout=600)
    published = stack.compose("ps", "--format", "{{.Service}} {{.Ports}}").splitlines()
    _log("docker compose ps:\n  " + "\n  ".join(published))
    # Only the API's port is published, on loopback.
    assert [p for p in published if "->" in p] == [f"api 127.0.0.1:{PORT}->8000/tcp"]

    reference = stack.run(SPEC)
    start = time.monotonic()
    stack.wait(reference, lambda r: r["status"] == "completed")
    _log(f"undisturbed run: {time.monotonic() - start:.1f} s")
    expected = stack.stats(reference)
    assert [s["round"] for s in expected] == list(range(1, 9))
    _log(
        "rounds (round, avg, win): "
        + ", ".join(f"({s['round']}, {s['avg']:.3f}, {s['win']:.3f})" for s in expected)
    )

    disturbed = stack.run(SPEC)
    stack.wait(disturbed, lambda r: r["round"] >= 1)
    cluster = stack.api.get("/cluster").json()
    workers = {n["node_id"] for n in cluster["nodes"]}
    assert len(workers) == 2, cluster  # the head and the workflow container have no CPUs
    assert {h["node_id"] for h in cluster["hosts"] if h["run_id"] == disturbed} == workers, cluster

    # One replica: `docker compose kill` (2.26) would kill every ray-worker; its container by name.
    stack.engine.docker("kill", f"{PROJECT}-ray-worker-2")
    _log(f"killed {PROJECT}-ray-worker-2 at round {stack.status(disturbed)['round']}")
    stack.wait(disturbed, lambda r: "recovered" in stack.events(disturbed))
    at = stack.status(disturbed)["round"]
    stack.timed(f"restart redis at round {at}", "restart", "redis")
    stack.wait(disturbed, lambda r: r["round"] > at)
    at = stack.status(disturbed)["round"]
    stack.timed(f"stop workflow at round {at}", "stop", "workflow", timeout=300)
    stack.timed("start workflow", "start", "workflow")
    start = time.monotonic()
    stack.wait(disturbed, lambda r: r["status"] == "completed")
    _log(f"disturbed run completed {time.monotonic() - start:.1f} s after the workflow started again")

    assert stack.stats(disturbed) == expected
    events = stack.events(disturbed)
    _log(f"events: {events}")
    assert "node lost" in events
    assert "recovered" in events
    assert "released" in events  # the stopped workflow handed the run back
    assert events.count("completed") == 1

    before = stack.compose("ps", "-a", "--format", "{{.Name}} {{.Status}}")
    _log("docker compose ps -a before down:\n  " + before.strip().replace("\n", "\n  "))
    stack.timed("down -v", "down", "-v", "--timeout", "30")
    after = stack.compose("ps", "-a", "--format", "{{.Name}} {{.Status}}")
    _log(f"docker compose ps -a after down: {after.strip() or '(nothing)'}")
    assert not after.strip()
    left = {
        what: stack.engine.docker(
            what,
            "ls",
            "-qa" if what == "container" else "-q",
            "--filter",
            f"label=com.docker.compose.project={PROJECT}",
        ).split()
        for what in ("container", "network", "volume")
    }
    _log(f"left after down -v: {left}")
    assert left == {"container": [], "network": [], "volume": []}
