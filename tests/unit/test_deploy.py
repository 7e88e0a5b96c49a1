"""The deployment files, checked without a Docker engine: compose.yaml against the compose
specification and for its references, the Dockerfile and .env.example for what they promise."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_follows_the_compose_specification():
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [checker, "--builtin-schema", "vendor.compose-spec", COMPOSE], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_has_every_part_and_its_references_hold(compose):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "ray-head", "ray-worker", "workflow", "api"}
    # Users get the public images; a machine without that registry names its own (tests/deploy).
    assert services["postgres"]["image"] == "${POSTGRES_IMAGE:-postgres:16}"
    assert services["redis"]["image"] == "${REDIS_IMAGE:-redis:7}"
    for name, service in services.items():
        for needed in service.get("depends_on", {}):
            assert needed in services, f"{name} depends on unknown {needed}"
        for mount in service.get("volumes", []):
            volume = mount.split(":", 1)[0]
            assert volume.startswith(("/", ".")) or volume in compose["volumes"], f"{name}: {volume}"
    for name in ("postgres", "redis", "ray-head"):
        assert "healthcheck" in services[name], name
    for name in ("workflow", "api"):
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert services["migrate"]["command"] == ["myriad", "db", "upgrade"]
    assert services["ray-worker"]["depends_on"]["ray-head"]["condition"] == "service_healthy"
    assert "ports" not in services["ray-worker"]  # scalable: `--scale ray-worker=N` needs no port
    for name in ("ray-head", "ray-worker"):
        assert services[name]["shm_size"]
    assert all(s.get("env_file") == ".env" for n, s in services.items() if n not in ("postgres", "redis"))


def test_every_setting_compose_reads_is_documented():
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE.read_text()))
    documented = set(re.findall(r"^#? ?([A-Z_][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M))
    assert used <= documented, used - documented
    secrets = re.findall(
        r"^(POSTGRES_PASSWORD|REDIS_PASSWORD|RAY_AUTH_TOKEN|MYRIAD_TOKEN)=(.*)$",
        (ROOT / ".env.example").read_text(),
        re.M,
    )
    names = ["POSTGRES_PASSWORD", "REDIS_PASSWORD", "RAY_AUTH_TOKEN", "MYRIAD_TOKEN"]
    assert secrets == [(name, "") for name in names]  # no default secret


def test_redis_requires_its_password_and_every_client_sends_it(compose):
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1] == "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"
    assert "REDISCLI_AUTH" in redis["environment"]  # the health check authenticates too
    environment = compose["x-myriad"]["environment"]
    assert environment["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")


def test_every_ray_node_and_driver_requires_the_token(compose):
    environment = compose["x-myriad"]["environment"]
    assert environment["RAY_AUTH_MODE"] == "token"
    assert environment["RAY_AUTH_TOKEN"] == "${RAY_AUTH_TOKEN:?set RAY_AUTH_TOKEN in .env}"
    for name in ("ray-head", "ray-worker", "workflow", "api"):
        assert compose["services"][name]["environment"] is environment, name  # none overrides it


def test_the_image_runs_unprivileged_and_holds_no_secret():
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", dockerfile, flags=re.M)[1:]
    final = stages[-1]
    assert final.startswith("${PYTHON_IMAGE}")
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in dockerfile
    assert re.search(r"^USER (?!root)\w+", final, re.M)
    assert "COPY --from=assets" in final  # the front-end assets are built in
    assert not re.search(r"^\s*(ENV|ARG)\b.*(TOKEN|PASSWORD|SECRET|API_KEY)", dockerfile, re.M | re.I)
    assert "apt-get" not in final
    assert "gcc" not in final
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".env", ".git", ".venv"} <= set(ignored)
