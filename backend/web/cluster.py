"""The cluster page, AgentScope Studio's agent manager across devices: every Ray node with its
resources and the hosts on it. Read from the live layer only, so it never waits on a node."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from backend import services
from backend.deps import RuntimeDep
from backend.runtime import Runtime
from backend.web.auth import require_login
from backend.web.render import page_or_fragment

__all__ = ["cluster_context", "router"]

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_login)])


async def cluster_context(rt: Runtime) -> dict[str, Any]:
    """The nodes, each with the hosts on it (and the run status of each host); hosts on a node
    no worker reports any more are listed under `unplaced`."""
    found = await services.cluster(rt)
    # One query for all the runs on the page (it is polled every second by each open tab).
    statuses = await services.run_statuses(rt, {h["run_id"] for h in found["hosts"]})
    by_node: dict[str | None, list[dict[str, Any]]] = {}
    for host in sorted(found["hosts"], key=lambda h: (h["run_id"], h["index"])):
        status = statuses.get(host["run_id"], "deleted")
        by_node.setdefault(host["node_id"], []).append(host | {"status": status})
    nodes = [node | {"hosts": by_node.pop(node["node_id"], [])} for node in found["nodes"]]
    unplaced = [host for hosts in by_node.values() for host in hosts]
    return {"nodes": nodes, "unplaced": unplaced}


@router.get("/cluster", name="cluster")
async def cluster_page(request: Request, rt: RuntimeDep) -> Response:
    return page_or_fragment(request, "cluster.html", "cluster_nodes.html", await cluster_context(rt))
