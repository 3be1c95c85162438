"""``GET /healthz``: liveness for load balancers and the container's HEALTHCHECK."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from ..config import Settings, get_settings

router = APIRouter(tags=["health"])


class Health(BaseModel):
    """The service is up, and plans on this device."""

    status: Literal["ok"] = "ok"
    device: str


@router.get("/healthz")
def healthz(settings: Annotated[Settings, Depends(get_settings)]) -> Health:
    """Answers 200 while the service can take requests."""
    return Health(device=str(settings.torch_device))
