"""/api/v1/cluster: the Ray nodes and the hosts on them, as the workers last reported them."""

from __future__ import annotations

from fastapi import APIRouter

from backend import services
from backend.api.bodies import JsonRoute
from backend.api.schemas import ClusterPublic
from backend.deps import RuntimeDep

router = APIRouter(prefix="/cluster", tags=["cluster"], route_class=JsonRoute)


@router.get("")
async def get_cluster(rt: RuntimeDep) -> ClusterPublic:
    """Every node with its CPUs, GPUs and memory, and every host of an active run. Read from the
    live layer, so it never waits on a node."""
    return ClusterPublic.model_validate(await services.cluster(rt))
