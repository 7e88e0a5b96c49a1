"""Nothing listens beyond what the user asked for, and nothing joins without a secret.

An embedded `myriad serve` and a Ray cluster set up as `compose.yaml` sets it up, looked at from
outside: the sockets they listen on (psutil), and clients that come without the secret.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import psutil
import pytest
import redis
import yaml

from tests.embedded import MYRIAD, Service, alive, announced_server, free_port, kill_valkeys, listening_at
from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
RAY = str(Path(sys.executable).with_name("ray"))
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}
REFUSED = "InvalidAuthToken"  # what Ray's servers answer a client without the cluster's token

# An outside Ray client: it joins the cluster at argv[1], waits (a bounded while) for argv[2]
# nodes to be alive, and prints how many are; a refusal fails it.
_CLIENT = """
import sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR")
deadline = time.monotonic() + 60
while (alive := sum(n["Alive"] for n in ray.nodes())) < int(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.5)
print(alive)
"""


class Listening(NamedTuple):
    address: str
    port: int
    process: str


def listening(processes: list[psutil.Process]) -> list[Listening]:
    found = []
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            for conn in process.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    found.append(Listening(conn.laddr.ip, conn.laddr.port, process.name()))
    return found


def ray_env(home: Path, token: str | None = None, **extra: str) -> dict[str, str]:
    """An environment of this machine's with no Ray or Myriad settings, and no token unless
    given: a home of its own (no ~/.ray/auth_token), and one quick attempt at the cluster rather
    than Ray's retries for a minute."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "MYRIAD_"))}
    env |= {
        "HOME": str(home),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_gcs_rpc_server_connect_timeout_s": "1",
        "RAY_gcs_server_port_wait_time_s": "1",
    }
    return env | ({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token} if token else {}) | extra


def ray_client(address: str, env: dict[str, str], nodes: int = 1) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _CLIENT, address, str(nodes)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_an_embedded_service_listens_on_loopback_and_asks_a_secret_of_every_client(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    service = Service(tmp_path, free_port(), "serve", HOME=str(home), MYRIAD_LOG_LEVEL="INFO")
    valkey: psutil.Process | None = None
    try:
        service.wait_up()
        service.wait_log("is waiting for runs")  # the worker serve starts has its Ray cluster up
        valkey = announced_server(tmp_path)
        assert valkey is not None
        sockets = listening([psutil.Process(service.process.pid), *service.descendants(), valkey])
        assert {"gcs_server", "raylet"} <= {s.process for s in sockets}  # Ray's servers are there
        assert [s for s in sockets if s.address not in LOOPBACK] == []

        # Ray: the token made for this start, private; an outside client without it is refused.
        ray_dir = service.ray_dir()
        token = (ray_dir / "auth_token").read_text()
        assert (mode(ray_dir), mode(ray_dir / "auth_token")) == (0o700, 0o600)
        (gcs,) = {s.port for s in sockets if s.process == "gcs_server"}
        # Ray would take 127.0.0.1 for this machine's outward address, where nothing listens.
        loopback = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        refused = ray_client(f"127.0.0.1:{gcs}", ray_env(home, **loopback))
        assert refused.returncode != 0
        assert REFUSED in refused.stderr, refused.stderr[-2000:]
        joined = ray_client(f"127.0.0.1:{gcs}", ray_env(home, token, **loopback))
        assert joined.stdout.strip() == "1", joined.stderr[-2000:]
        # Ray's own logs, read before the service's clean stop removes them.
        ray_logs = [
            p.read_text(errors="replace") for p in ray_dir.glob("ray/session_*/logs/*") if p.is_file()
        ]

        # Valkey: its password in the 0600 announce file only; a client without it is refused.
        announce = tmp_path / "myriad.db.live"
        url = json.loads(announce.read_text())["url"]
        password = urlsplit(url).password
        assert password
        assert mode(announce) == 0o600
        assert mode(Path(valkey.cwd())) == 0o700  # its config holds the password
        stranger = redis.Redis(host="127.0.0.1", port=urlsplit(url).port, socket_timeout=5)
        with pytest.raises(redis.AuthenticationError), contextlib.closing(stranger):
            stranger.ping()

        # Neither secret in a log line (the service's, at INFO, or Ray's own), nor in ~/.ray.
        assert service.stop() in (0, -signal.SIGTERM)
        logged = service.log.read_text()
        assert "listening at redis://:***@127.0.0.1:" in logged  # the log line that names it
        for text in (logged, *ray_logs):
            assert password not in text
            assert token not in text
        assert not (home / ".ray").exists()
    finally:
        service.kill_group()
        kill_valkeys([valkey] if valkey else [])


# -- a cluster as compose.yaml sets it up --------------------------------------------------------


def _interpolate(value: str, env: dict[str, str]) -> str:
    """compose's `${NAME}`, `${NAME:-default}` and `${NAME:?error}`, for the test's `.env`."""
    return re.sub(r"\$\{(\w+)(?::[-?][^}]*)?\}", lambda m: env[m.group(1)], value)


def compose_ray(dot_env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The Ray head's command and the Ray settings every node gets, from compose.yaml."""
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    environment = compose["x-myriad"]["environment"]
    settings = {k: _interpolate(str(v), dot_env) for k, v in environment.items() if k.startswith("RAY_AUTH")}
    return compose["services"]["ray-head"]["command"], settings


@contextlib.contextmanager
def started(command: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A `ray start … --block` (or `myriad node join`) in a process group of its own; on exit it
    is killed with everything it started (Ray's workers have process groups of their own)."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield process
    finally:
        tree: list[psutil.Process] = []
        with contextlib.suppress(psutil.Error):  # it may have ended (refused)
            tree = psutil.Process(process.pid).children(recursive=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        for child in alive(tree):
            with contextlib.suppress(psutil.Error):
                child.kill()
        process.wait(30)


def test_a_token_cluster_refuses_a_node_without_the_token():
    token = secrets.token_hex(32)
    head_command, settings = compose_ray({"RAY_AUTH_TOKEN": token})
    # Short: Ray's socket paths, under its temp dir, must stay under 108 bytes.
    folder = Path(tempfile.mkdtemp(prefix="mr-", dir="/tmp"))
    port = free_port()
    # compose's head on a free port (6380 may be taken), with its files in our folder.
    head_command = [f"--port={port}" if c.startswith("--port=") else c for c in head_command]
    head_command += [f"--temp-dir={folder / 'head'}", "--include-dashboard=false"]
    head_command[0] = RAY
    address = f"127.0.0.1:{port}"
    node = [MYRIAD, "node", "join", address, "--cpus", "1", "--temp-dir", str(folder / "node")]
    try:
        with started(head_command, ray_env(folder) | settings, folder / "head.log"):
            wait_for(lambda: listening_at(port), f"something to listen at {port}", every=0.2)
            # A node without the token: refused by the head (Ray's own `ray start`), or not even
            # started (`myriad node join`).
            intruder = [RAY, "start", f"--address={address}", f"--temp-dir={folder / 'intruder'}", "--block"]
            with started(intruder, ray_env(folder), folder / "intruder.log") as refused:
                assert refused.wait(60) != 0
            assert REFUSED in (folder / "intruder.log").read_text()
            tokenless = subprocess.run(node, env=ray_env(folder), capture_output=True, text=True, timeout=60)
            assert tokenless.returncode == 1
            assert "set RAY_AUTH_TOKEN" in tokenless.stderr

            # With the token from .env, `myriad node join` joins.
            with started(node, ray_env(folder, RAY_AUTH_TOKEN=token), folder / "node.log"):
                joined = ray_client(address, ray_env(folder, token), nodes=2)
                assert joined.stdout.strip() == "2", (folder / "node.log").read_text()[-2000:]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
