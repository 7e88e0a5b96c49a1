"""The cluster and its workers as they last reported, and what `/metrics` counts."""

from __future__ import annotations

from typing import Any

from redis.exceptions import RedisError

from agents.core import sum_usage
from backend.runtime import Runtime
from backend.store import runs
from backend.workflow.presence import present

__all__ = ["cluster", "metrics", "workers"]


async def metrics(rt: Runtime) -> dict[str, Any]:
    """What `/metrics` reports: runs by status, rounds and agents, the cluster's nodes and hosts
    with their steps and failures, and language-model tokens by model."""
    async with rt.sessions() as session:
        totals = await runs.totals(session)
    found = await cluster(rt)
    tokens: dict[str, dict[str, int]] = sum_usage((await rt.live.state_field("usage")).values())
    return {
        **totals,
        "nodes": len(found["nodes"]),
        "hosts": len(found["hosts"]),
        "steps": sum(h["steps"] for h in found["hosts"]),
        "failures": sum(h["failures"] for h in found["hosts"]),
        "tokens": {
            m: {k: u.get(k, 0) for k in ("prompt_tokens", "completion_tokens")} for m, u in tokens.items()
        },
    }


async def cluster(rt: Runtime) -> dict[str, Any]:
    """The Ray nodes and the hosts of active runs, as the workers last reported them."""
    nodes = await rt.live.nodes()
    hosts = await rt.live.all_hosts()
    return {
        "nodes": nodes,
        "hosts": [{"run_id": run_id, **h} for run_id, found in hosts.items() for h in found],
    }


async def workers(rt: Runtime) -> list[dict[str, Any]]:
    """The workers alive on this database (idle ones first), as they last said; none while the
    live layer is away."""
    try:
        return await present(rt.live, rt.settings)
    except RedisError:
        return []
