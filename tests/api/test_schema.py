"""schemathesis over /api/v1, as its command line runs it: every check, and the examples,
coverage, fuzzing and stateful phases (following the schema's links from a created run), against
the real server (uvicorn on loopback). Settings in schemathesis.toml beside this file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from backend.settings import Settings
from tests.conftest import TOKEN, serve_app

CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
def api_url(tmp_path_factory, redis_url):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path_factory.mktemp('schema') / 'api.db'}",
        redis_url=redis_url,
        token=TOKEN,
        serve_worker=False,
        # schemathesis sends wrong tokens on purpose (they must be refused): no limit on that here.
        # The limit has its own tests (tests/security/test_web.py).
        sign_in_failures=1_000_000,
    )
    with serve_app(settings) as url:
        yield url


def test_the_api_keeps_its_schema(api_url, tmp_path):
    schema = httpx.get(f"{api_url}/api/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    schema.raise_for_status()
    (tmp_path / "openapi.json").write_bytes(schema.content)
    command = [Path(sys.executable).with_name("schemathesis"), "--config-file", CONFIG, "run"]
    command += [tmp_path / "openapi.json", "--url", api_url, "-H", f"Authorization: Bearer {TOKEN}"]
    command += ["--checks", "all", "--phases", "examples,coverage,fuzzing,stateful"]
    command += ["--max-examples", "30", "--seed", "2026", "--generation-database", "none"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    cases = re.search(r"(\d+) generated, (\d+) passed", report)
    assert cases, report
    assert int(cases[1]) >= 1000, report  # every phase ran
    assert cases[1] == cases[2], report
