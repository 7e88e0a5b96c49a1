"""A container engine of the test's own on a fresh Debian machine: Debian's docker.io daemon on a
private socket and data root, Compose v2 and buildx (from Debian's next release, fetched with a
private apt configuration), and stand-ins for the public base images built from Debian packages
(the registry that serves python, node, postgres and redis is out of reach here). What it makes
is kept in ROOT and reused by the next run on the machine."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["ROOT", "STANDINS", "Engine", "engine"]

ROOT = Path("/var/lib/myriad-deploy")
SOCKET = "unix:///run/myriad-deploy-docker.sock"
HERE = Path(__file__).parent
# What a .env sets to build and run on the stand-ins: the image names users get by default are
# in the Dockerfile and compose.yaml.
STANDINS = {
    "PYTHON_IMAGE": "myriad-standin/python:bookworm",
    "NODE_IMAGE": "myriad-standin/node:bookworm",
    "POSTGRES_IMAGE": "myriad-standin/postgres:bookworm",
    "REDIS_IMAGE": "myriad-standin/redis:bookworm",
}
_BASE = "myriad-standin/debian:bookworm"
_MIRRORS = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
]


def _run(*command: str | Path, timeout: float = 600, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode:
        raise RuntimeError(
            f"{' '.join(map(str, command))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


class Engine:
    """The docker CLI pointed at the test's daemon."""

    def __init__(self) -> None:
        self.env = {**os.environ, "DOCKER_HOST": SOCKET, "DOCKER_CONFIG": str(ROOT / "config")}

    def docker(self, *args: str | Path, timeout: float = 600, cwd: Path | None = None) -> str:
        done = subprocess.run(
            ["docker", *map(str, args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=cwd,
        )
        if done.returncode:
            raise RuntimeError(
                f"docker {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
            )
        return done.stdout

    def has_image(self, name: str) -> bool:
        return (
            subprocess.run(
                ["docker", "image", "inspect", name], capture_output=True, env=self.env, timeout=60
            ).returncode
            == 0
        )


def _apt_install(*packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    _run("apt-get", "update", "-qq", env=env)
    _run("apt-get", "install", "-y", "-qq", *packages, env=env)


def _plugins() -> None:
    """docker compose (v2) and buildx as CLI plugins: Debian 12 has neither (its docker-compose is
    the deprecated 1.29), its next release has both as static binaries."""
    plugins = ROOT / "config" / "cli-plugins"
    if all((plugins / f"docker-{name}").exists() for name in ("compose", "buildx")):
        return
    apt = ROOT / "apt"
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "cache" / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "sources").mkdir(exist_ok=True)
    (apt / "sources" / "trixie.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    private = [  # the machine's own apt sources stay as they are
        "-o", "Dir::Etc::SourceList=/dev/null", "-o", f"Dir::Etc::SourceParts={apt / 'sources'}",
        "-o", f"Dir::State::Lists={apt / 'lists'}", "-o", f"Dir::Cache={apt / 'cache'}",
        "-o", "Dir::Etc::Preferences=/dev/null", "-o", "Dir::Etc::PreferencesParts=/dev/null",
    ]  # fmt: skip
    _run("apt-get", *private, "update", "-qq")
    plugins.mkdir(parents=True, exist_ok=True)
    for package, name in (("docker-compose", "compose"), ("docker-buildx", "buildx")):
        for old in apt.glob(f"{package}_*.deb"):
            old.unlink()
        subprocess.run(
            ["apt-get", *private, "download", package], cwd=apt, check=True, capture_output=True, timeout=300
        )
        deb = next(apt.glob(f"{package}_*.deb"))
        content = subprocess.run(
            f"dpkg-deb --fsys-tarfile {deb} | tar -xO ./usr/libexec/docker/cli-plugins/docker-{name}",
            shell=True, check=True, capture_output=True, timeout=300,
        ).stdout  # fmt: skip
        target = plugins / f"docker-{name}"
        target.write_bytes(content)
        target.chmod(0o755)


@contextlib.contextmanager
def _daemon(engine: Engine) -> Iterator[None]:
    """dockerd on its own socket, data root and exec root, stopped by its PID at the end. No
    iptables: nothing of the machine's own network changes (containers on a compose network still
    reach each other, and a published port is forwarded by docker's userland proxy)."""
    (ROOT / "data").mkdir(parents=True, exist_ok=True)
    log = (ROOT / "dockerd.log").open("ab")
    try:
        daemon = _started(engine, log)
        try:
            yield
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait()
    finally:
        log.close()


def _started(engine: Engine, log: IO[bytes], attempts: int = 3) -> subprocess.Popen[bytes]:
    """A dockerd that answers `docker info`. One that gives up while starting is started again:
    on a busy 2-core machine its containerd sometimes misses dockerd's start-up timeout (seen once
    in a clean-clone CI run; the log then ends with "timeout waiting for containerd to start")."""
    for _ in range(attempts):
        daemon = subprocess.Popen(
            ["dockerd", "--host", SOCKET, "--data-root", ROOT / "data", "--iptables=false",
             "--exec-root", "/run/myriad-deploy-docker", "--pidfile", "/run/myriad-deploy-docker.pid"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        if _answers(engine, daemon, timeout=60):
            return daemon
        with contextlib.suppress(ProcessLookupError):  # its containerd too, which holds the socket
            os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait()
    raise RuntimeError(f"dockerd did not start in {attempts} attempts: see {ROOT / 'dockerd.log'}")


def _answers(engine: Engine, daemon: subprocess.Popen[bytes], timeout: float) -> bool:
    """Whether `daemon` comes to answer `docker info` before it exits or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while subprocess.run(["docker", "info"], capture_output=True, env=engine.env, timeout=30).returncode:
        if daemon.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _standins(engine: Engine) -> None:
    """A minimal Debian root file system as the base, and on it Python 3.11, Node, PostgreSQL 15 and
    Redis 7 from Debian's packages, under the names .env gives the stack (kept between runs)."""
    if all(engine.has_image(name) for name in STANDINS.values()):
        return
    if not engine.has_image(_BASE):
        rootfs = ROOT / "rootfs.tar"
        _run("mmdebstrap", "--variant=minbase", "--mode=root", "--quiet", "bookworm", rootfs, *_MIRRORS)
        engine.docker("import", "--change", 'CMD ["bash"]', rootfs, _BASE)
        rootfs.unlink()
    for variable, name in STANDINS.items():
        kind = variable.removesuffix("_IMAGE").lower()
        engine.docker(
            "buildx", "build", "--network", "host", "--build-arg", f"BASE={_BASE}",
            "-f", HERE / "standins" / f"{kind}.Dockerfile", "-t", name, "--load", HERE / "standins",
        )  # fmt: skip


@contextlib.contextmanager
def engine() -> Iterator[Engine]:
    """A ready engine with the stand-in images; the daemon stops when the block ends."""
    if shutil.which("dockerd") is None or shutil.which("mmdebstrap") is None:
        _apt_install("docker.io", "mmdebstrap")
    _plugins()
    ready = Engine()
    with _daemon(ready):
        _standins(ready)
        yield ready
