"""/healthz: the one open route, for load balancers and compose health checks."""

from __future__ import annotations

from fastapi import APIRouter

from backend.deps import RuntimeDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(rt: RuntimeDep) -> dict[str, str]:
    await rt.live.ping()
    return {"status": "ok"}
