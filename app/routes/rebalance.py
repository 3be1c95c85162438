"""``POST /rebalance`` (JSON) and ``POST /rebalance/upload`` (a load file, CSV, JSON or ``.pt``,
and optionally the placement in use): a plan, its effect and its moves. ``POST /rebalance/csv``
is the upload route's first name, kept for the clients that use it.

All are plain ``def`` routes: FastAPI runs them in its thread pool, off the event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile, status

from ..config import Settings, get_settings
from ..schemas import ErrorResponse, RebalanceParams, RebalanceRequest, RebalanceResponse
from ..schemas import ValidationErrorResponse
from ..service import rebalance
from ..uploads import read_loads_upload, read_placement_upload

router = APIRouter(tags=["rebalance"])

ERRORS: dict[int | str, dict[str, Any]] = {
    status.HTTP_400_BAD_REQUEST: {"model": ErrorResponse,
                                  "description": "a body that cannot be parsed"},
    status.HTTP_413_CONTENT_TOO_LARGE: {"model": ErrorResponse,
                                        "description": "over EPLB_MAX_UPLOAD_BYTES"},
    status.HTTP_415_UNSUPPORTED_MEDIA_TYPE: {"model": ErrorResponse,
                                             "description": "wrong content type"},
    status.HTTP_422_UNPROCESSABLE_CONTENT: {
        "model": ValidationErrorResponse,
        "description": "a bad file, matrix, cluster shape or placement, or a matrix over the "
                       "server's limits"},
}


def require_content_type(expected: str) -> Callable[[Request], None]:
    """A dependency answering 415 unless the request body is of the ``expected`` media type."""

    def check(request: Request) -> None:
        given = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if given != expected:
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"expected a body of "
                                f"type {expected}, got {given or 'no content type'!r}")

    return check


JSON_BODY = [Depends(require_content_type("application/json"))]
MULTIPART = [Depends(require_content_type("multipart/form-data"))]


@router.post("/rebalance", responses=ERRORS,
             dependencies=JSON_BODY)
def rebalance_json(body: RebalanceRequest,
                   settings: Annotated[Settings, Depends(get_settings)]) -> RebalanceResponse:
    """Plan the experts of a JSON load matrix ``weight`` [layers][experts], starting from the
    placement in use ``current`` when given."""
    current = None if body.current is None else torch.tensor(body.current)
    return rebalance(torch.tensor(body.weight, dtype=torch.float32), body.params(), settings,
                     current).as_dict()


LoadsFile = Annotated[UploadFile, File(
    description="loads: CSV (a row per layer, a column per expert), JSON (a nested list or an "
                "object with logical_count) or .pt (a tensor or a dict with logical_count, as "
                "SGLang's expert distribution recorder dumps); [layers, experts], or [steps, "
                "layers, experts]")]
PlacementFile = Annotated[UploadFile | None, File(
    description="the placement in use, phy2log [layers, slots]: CSV, JSON (a nested list or an "
                "object with phy2log or physical_to_logical_map) or .pt; default the trivial "
                "layout")]


@router.post("/rebalance/upload", responses=ERRORS, dependencies=MULTIPART)
@router.post("/rebalance/csv", responses=ERRORS, summary="Rebalance Upload (first name)",
             dependencies=MULTIPART)
def rebalance_upload(file: LoadsFile, params: Annotated[RebalanceParams, Form()],
                     settings: Annotated[Settings, Depends(get_settings)],
                     placement: PlacementFile = None) -> RebalanceResponse:
    """Plan the experts of an uploaded load file; the parameters are form fields.

    A time series is summed over its steps, and ``num_steps`` says how many.
    """
    return rebalance(read_loads_upload(file, settings.max_upload_bytes), params, settings,
                     read_placement_upload(placement, settings.max_upload_bytes)).as_dict()
