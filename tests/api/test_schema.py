"""schemathesis over /api/v1: generated requests against the real server (uvicorn on loopback),
with zero server errors and zero responses that break the published schema."""

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from backend.app import create_app
from backend.settings import Settings
from tests.conftest import TOKEN, serve_app


@pytest.fixture(scope="module")
def api_url(tmp_path_factory, redis_url):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path_factory.mktemp('schema') / 'api.db'}",
        redis_url=redis_url,
        token=TOKEN,
        in_process_worker=False,
    )
    with serve_app(settings) as url:
        yield url


# The schema the app publishes (building the app starts nothing; its lifespan does).
schema = schemathesis.openapi.from_dict(create_app(Settings(token=TOKEN)).openapi())


@schema.parametrize()
@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_api_keeps_its_schema(case, api_url):
    case.call_and_validate(
        base_url=api_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
    )
