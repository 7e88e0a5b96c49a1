"""A client generated from the published schema by openapi-python-client, as an API user would
make one: it creates a run, follows it to completion, reads its rounds and downloads an export,
all with typed results."""

from __future__ import annotations

import csv
import importlib
import io
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.conftest import TOKEN, driving_settings, serve_app, spec_data
from tests.waiting import wait_for

# The generator's defaults, but for formatting the code it writes (ruff need not be on the PATH).
CONFIG = "post_hooks: []\n"


@pytest.fixture(scope="module")
def service(tmp_path_factory, redis_url, ray_cluster):
    folder = tmp_path_factory.mktemp("client")
    with serve_app(driving_settings(f"sqlite:///{folder / 'client.db'}", redis_url), drive=True) as url:
        yield url, folder


@pytest.fixture(scope="module")
def generated(service):
    """The client package, generated from the schema the running service serves."""
    url, folder = service
    schema = httpx.get(f"{url}/api/v1/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})
    schema.raise_for_status()
    (folder / "openapi.json").write_bytes(schema.content)
    (folder / "config.yaml").write_text(CONFIG)
    generator = Path(sys.executable).with_name("openapi-python-client")
    where = ["--path", folder / "openapi.json", "--config", folder / "config.yaml"]
    made = subprocess.run(
        [generator, "generate", "--meta", "none", *where, "--output-path", folder / "myriad_client"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert "Warning" not in made.stdout, made.stdout  # every operation and model was generated
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("myriad_client")
    finally:
        sys.path.remove(str(folder))


def test_a_generated_client_runs_a_simulation_with_typed_results(service, generated):
    url, _ = service
    from myriad_client.api.runs import runs_create_run, runs_export_run, runs_get_run, runs_list_rounds
    from myriad_client.models import (
        ErrorOut,
        RoundPublic,
        RunPublic,
        RunsExportRunFormat,
        RunsExportRunTable,
        RunSpec,
        RunStatus,
    )

    with generated.AuthenticatedClient(base_url=url, token=TOKEN) as client:
        spec = RunSpec.from_dict(spec_data(name="generated client", rounds=4))
        run = runs_create_run.sync(client=client, body=spec)
        assert isinstance(run, RunPublic), run
        assert run.status is RunStatus.QUEUED
        assert run.created_at.utcoffset() is not None  # a date-time with its offset, as the schema says

        def completed() -> RunPublic | None:
            now = runs_get_run.sync(run.id, client=client)
            assert isinstance(now, RunPublic)
            assert now.status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.COMPLETED), now.error
            return now if now.status is RunStatus.COMPLETED else None

        run = wait_for(completed, "the run to complete", 120, every=0.3)
        assert run.finished_at is not None
        assert run.finished_at >= run.created_at
        assert isinstance(run.spec, RunSpec)
        assert run.spec.name == "generated client"

        rounds = runs_list_rounds.sync(run.id, client=client)
        assert [r.round_ for r in rounds.data] == [1, 2, 3, 4]
        first = rounds.data[0]
        assert isinstance(first, RoundPublic)
        assert 0 <= first.stats["avg"] <= 100
        assert first.stats["cnt"] == 1000

        exported = runs_export_run.sync(
            run.id, client=client, table=RunsExportRunTable.ROUNDS, format_=RunsExportRunFormat.CSV
        )
        assert isinstance(exported, str), exported
        rows = list(csv.DictReader(io.StringIO(exported)))
        assert [int(r["round"]) for r in rows] == [1, 2, 3, 4]
        assert float(rows[0]["avg"]) == first.stats["avg"]

        missing = runs_get_run.sync(10**9, client=client)
        assert isinstance(missing, ErrorOut)
        assert missing.detail == "run 1000000000 not found"
