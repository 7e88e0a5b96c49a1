import httpx2 as httpx
import pytest

from tests.conftest import API, spec_data


@pytest.fixture
def slow_run(site):
    """A run of agents that each take 0.3 s a round: still going when a test pauses or stops it;
    stopped at the end."""
    spec = spec_data(
        name="slow run",
        rounds=200,
        placement={"hosts": 2},
        **{"population.kinds": [{"kind": "probe", "share": 100, "params": {"delay": 0.3}}]},
    )
    run = httpx.post(f"{site}/api/v1/runs", json=spec, headers=API).json()
    yield run
    httpx.post(f"{site}/api/v1/runs/{run['id']}/stop", headers=API)
