import re

import pytest
from fastapi.testclient import TestClient

from backend.app import create_app
from tests.conftest import TOKEN


def sign_in(visitor) -> None:
    response = visitor.post("/login", data={"token": TOKEN, "next": "/"})
    assert response.status_code == 303


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


@pytest.fixture
def visitor(api_settings):
    """A client with no token: it signs in like a person would."""
    with TestClient(create_app(api_settings), follow_redirects=False) as client:
        yield client


@pytest.fixture
def member(visitor):
    """A signed-in visitor."""
    sign_in(visitor)
    return visitor
