"""Bounded input: what the API refuses, with a 422 that names the field (400 for JSON that cannot
be read, 415 for a body that is not JSON), and stores nothing of."""

from __future__ import annotations

import json

import pytest
import redis

from tests.conftest import spec_data

LLM = {"models": {"m": {"endpoints": [{"url": "http://10.0.0.7:8000/v1"}], "api_key_env": "TEST_LLM_KEY"}}}


@pytest.fixture(autouse=True)
def fresh_live_layer(client):
    redis.Redis.from_url(client.app.state.runtime.live.url).flushdb()


def stored_runs(client) -> int:
    return client.get("/api/v1/runs").json()["count"]


def refused(client, data: dict, field: str) -> str:
    """Submit `data`; assert a 422 naming `field` and that no run was stored; the message."""
    response = client.post("/api/v1/runs", json=data)
    assert response.status_code == 422, response.text
    errors = {e["field"]: e["message"] for e in response.json()["errors"]}
    assert field in errors, errors
    assert stored_runs(client) == 0
    return errors[field]


def test_templates_take_plain_fields_only(client):
    message = refused(
        client, spec_data(**{"population.background": "{name:>20000000}"}), "population.background"
    )
    assert "{name:>20000000}" in message
    refused(client, spec_data(**{"population.background": "{name.__class__}"}), "population.background")
    persona = {"model": "m", "prompt": "{facts:>9999999}"}
    refused(client, spec_data(**{"llm": LLM, "population.persona": persona}), "population.persona.prompt")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "n" * 201}, "name"),
        ({"scenario.name": "s" * 101}, "scenario.name"),
        ({"population.kinds.0.label": "l" * 1001}, "population.kinds.0.label"),
        ({"population.attributes": {"a" * 101: {"x": 100}}}, f"population.attributes.{'a' * 101}.[key]"),
        ({"population.background": "{name} " * 400}, "population.background"),
        (
            {"llm": {"models": {"m": {"endpoints": [{"url": "http://h/" + "p" * 2000}]}}}},
            "llm.models.m.endpoints.0.url",
        ),
    ],
)
def test_text_fields_have_length_limits(client, changes, field):
    refused(client, spec_data(**changes), field)


def test_counts_are_numbers_not_text_or_booleans(client):
    refused(client, spec_data(**{"population.total": "1000"}), "population.total")
    refused(client, spec_data(**{"population.total": True}), "population.total")
    refused(client, spec_data(**{"rounds": 1.5}), "rounds")
    refused(client, spec_data(**{"scenario.params.max_value": "100"}), "scenario")


def test_a_too_deep_spec_names_where(client):
    deep: dict = {}
    inner = deep
    for _ in range(40):
        inner["x"] = {}
        inner = inner["x"]
    message = refused(
        client,
        spec_data(**{"population.kinds.0.params": deep}),
        "population.kinds.0.params.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x.x",
    )
    assert "deeper than 32" in message


def test_a_key_given_twice_is_refused(client):
    body = json.dumps(spec_data(rounds=1))[:-1] + ', "rounds": 1000000}'
    response = client.post("/api/v1/runs", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "body", "message": "the key 'rounds' is given twice"}]
    assert stored_runs(client) == 0


def test_malformed_json_is_400_and_other_media_415(client):
    response = client.post("/api/v1/runs", content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("malformed JSON")
    for headers in (
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/x-www-form-urlencoded"},
        {},
    ):
        response = client.post("/api/v1/runs", content=json.dumps(spec_data()).encode(), headers=headers)
        assert response.status_code == 415, headers
    too_big = b'{"name": "' + b"x" * 1_100_000 + b'"}'
    assert (
        client.post("/api/v1/runs", content=too_big, headers={"Content-Type": "application/json"}).status_code
        == 413
    )
    assert stored_runs(client) == 0


@pytest.mark.parametrize(
    "variable", ["MYRIAD_TOKEN", "DATABASE_URL", "REDIS_URL", "RAY_AUTH_TOKEN", "OPENAI_API_KEY"]
)
def test_model_keys_come_only_from_variables_the_operator_allows(client, variable):
    llm = {"models": {"m": {"endpoints": [{"url": "http://10.0.0.7:8000/v1"}], "api_key_env": variable}}}
    message = refused(client, spec_data(llm=llm), "llm.models.m.api_key_env")
    assert "MYRIAD_LLM_KEYS" in message


def test_the_service_own_secrets_are_refused_even_when_allowed(client):
    client.app.state.runtime.settings.llm_keys = "MYRIAD_TOKEN,TEST_LLM_KEY"
    llm = {
        "models": {"m": {"endpoints": [{"url": "http://10.0.0.7:8000/v1"}], "api_key_env": "MYRIAD_TOKEN"}}
    }
    refused(client, spec_data(llm=llm), "llm.models.m.api_key_env")
    assert client.post("/api/v1/runs", json=spec_data(llm=LLM)).status_code == 201


def test_endpoints_only_on_hosts_the_operator_allows(client):
    client.app.state.runtime.settings.llm_endpoints = "10.0.0.7:8000, gpu1"
    allowed = {"endpoints": [{"url": "http://10.0.0.7:8000/v1"}, {"url": "https://GPU1/v1"}]}
    assert client.post("/api/v1/runs", json=spec_data(llm={"models": {"m": allowed}})).status_code == 201
    elsewhere = {"endpoints": [{"url": "http://gpu1/v1"}, {"url": "http://attacker.example:8000/v1"}]}
    response = client.post("/api/v1/runs", json=spec_data(llm={"models": {"m": elsewhere}}))
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["llm.models.m.endpoints.1.url"]
    assert stored_runs(client) == 1


async def _report_cluster(client, cpus: float, memory: int) -> None:
    """What a worker publishes about the cluster it sees."""
    node = {"node_id": "n1", "address": "10.0.0.1", "cpus": cpus, "gpus": 0.0, "memory_bytes": memory}
    await client.app.state.runtime.live.set_nodes([node])


def test_a_run_too_big_for_the_cluster_is_refused_with_the_numbers(client):
    client.portal.call(_report_cluster, client, 2, 4 * 10**9)
    message = refused(client, spec_data(**{"population.total": 100_000_000}), "population.total")
    # Rule-based kinds in columns take 100 bytes an agent, each host process 100 MiB.
    assert "100,000,000 agents on 2 hosts need about 10.2 GB" in message
    assert "1 node with 2 CPUs and 4.0 GB" in message
    message = refused(
        client, spec_data(**{"placement.hosts": 10_000, "population.total": 20_000}), "placement.hosts"
    )
    assert "10,000 hosts is more than 4 per CPU" in message
    assert client.post("/api/v1/runs", json=spec_data(**{"population.total": 1_000_000})).status_code == 201


def test_injections_and_interviews_are_bounded(client):
    run = client.post("/api/v1/runs", json=spec_data()).json()["id"]
    long_where = {"gender": "f" * 101}
    response = client.post(f"/api/v1/runs/{run}/inject", json={"content": "hi", "where": long_where})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "where.gender"
    response = client.post(f"/api/v1/runs/{run}/inject", json={"content": "hi", "public": "yes"})
    assert response.status_code == 422
    response = client.post(f"/api/v1/runs/{run}/agents/0/interview", json={"question": "q" * 2001})
    assert response.status_code == 422
