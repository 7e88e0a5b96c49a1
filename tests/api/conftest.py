import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from backend.settings import Settings

TOKEN = "test-token"


@pytest.fixture
def api_settings(tmp_path, redis_url) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        redis_url=redis_url,
        token=TOKEN,
        in_process_worker=False,
    )


@pytest.fixture
def client(api_settings):
    with TestClient(create_app(api_settings), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        client.app.state.runtime  # noqa: B018 - the lifespan has run
        yield client
