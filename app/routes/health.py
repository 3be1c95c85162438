"""``GET /healthz``: liveness for load balancers and the container's HEALTHCHECK.

An ``async`` route that touches nothing but the settings: it answers on the event loop at once,
however busy the planning workers are.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel

from ..deps import PoolDep, SettingsDep

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The service is up, plans on this device, and how many requests it holds."""

    status: Literal["ok"] = "ok"
    device: str
    admitted: int
    capacity: int


@router.get("/healthz")
async def healthz(request: Request, settings: SettingsDep, pool: PoolDep) -> Health:
    """Answers 200 while the service can take requests."""
    return Health(device=str(settings.torch_device), admitted=pool.admitted, capacity=pool.capacity)
