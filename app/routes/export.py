"""``POST /export/physical_to_logical_map.{json,pt}``: a placement as the file SGLang's
``--init-expert-location`` reads (``eplb_core.io.map_to_json`` / ``map_to_pt``)."""

from __future__ import annotations

from typing import Any

import torch
from fastapi import APIRouter
from fastapi.responses import Response

from eplb_core.io import map_to_json, map_to_pt

from ..schemas import PlacementBody
from .rebalance import ERRORS, JSON_BODY

router = APIRouter(prefix="/export", tags=["export"])

JSON_NAME = "physical_to_logical_map.json"
PT_NAME = "physical_to_logical_map.pt"


def _file(content: str | bytes, media_type: str, filename: str) -> Response:
    return Response(content, media_type=media_type,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _responses(media_type: str) -> dict[int | str, dict[str, Any]]:
    return {200: {"content": {media_type: {}}, "description": "the file"}, **ERRORS}


@router.post(f"/{JSON_NAME}", response_class=Response, dependencies=JSON_BODY,
             responses=_responses("application/json"))
def export_json(body: PlacementBody) -> Response:
    """``{"physical_to_logical_map": [[...]]}``: the placement ``phy2log`` as JSON."""
    return _file(map_to_json(torch.tensor(body.phy2log)), "application/json", JSON_NAME)


@router.post(f"/{PT_NAME}", response_class=Response, dependencies=JSON_BODY,
             responses=_responses("application/octet-stream"))
def export_pt(body: PlacementBody) -> Response:
    """The same map saved with ``torch.save``: a dict with one int64 [layers, slots] tensor,
    loadable with ``torch.load(weights_only=True)``."""
    return _file(map_to_pt(torch.tensor(body.phy2log)), "application/octet-stream", PT_NAME)
