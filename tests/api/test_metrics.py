"""/metrics: Prometheus' text format, behind the token."""

import asyncio
import re

from backend.live.channel import LiveChannel
from tests.conftest import spec_data


def value(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, f"{name} not in the metrics"
    return float(found.group(1))


def test_metrics_report_runs_cluster_tokens_and_request_times(client):
    first = client.post("/api/v1/runs", json=spec_data()).json()
    client.post("/api/v1/runs", json=spec_data())
    client.post(f"/api/v1/runs/{first['id']}/stop")
    client.get("/api/v1/runs/999")

    async def report() -> None:  # what workers publish as runs go
        live = LiveChannel(client.app.state.runtime.live.url)
        usage = {"m": {"calls": 3, "prompt_tokens": 120, "completion_tokens": 9}}
        await live.set_state(first["id"], usage=usage)
        await live.set_nodes(
            [{"node_id": "a", "address": "10.0.0.2", "cpus": 4, "gpus": 0, "memory_bytes": 1}]
        )
        await live.close()

    asyncio.run(report())
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert value(text, 'myriad_runs{status="queued"}') == 1
    assert value(text, 'myriad_runs{status="stopped"}') == 1
    assert value(text, "myriad_nodes") == 1
    assert value(text, 'myriad_llm_tokens{kind="prompt",model="m"}') == 120
    assert value(text, 'myriad_llm_tokens{kind="completion",model="m"}') == 9
    assert value(text, "myriad_rounds") == 0
    assert value(text, "myriad_agent_steps") == value(text, "myriad_agent_step_failures") == 0
    # `_total` is the suffix Prometheus keeps for counters; what can go down is a gauge without it.
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    assert [name for name, kind in types.items() if kind == "gauge" and name.endswith("_total")] == []
    assert (
        value(text, 'myriad_http_request_seconds_count{method="POST",route="create_run",status="201"}') == 2
    )
    assert value(text, 'myriad_http_request_seconds_count{method="GET",route="get_run",status="404"}') == 1
    client.headers.pop("Authorization")
    assert client.get("/metrics").status_code == 401
