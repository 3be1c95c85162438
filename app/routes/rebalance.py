"""``POST /rebalance`` (JSON) and ``POST /rebalance/csv`` (a CSV upload): a plan and its effect.

Both are plain ``def`` routes: FastAPI runs them in its thread pool, off the event loop.
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
from ..uploads import read_csv_upload

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
        "description": "a bad matrix or cluster shape, or a matrix over the server's limits"},
}


def require_content_type(expected: str) -> Callable[[Request], None]:
    """A dependency answering 415 unless the request body is of the ``expected`` media type."""

    def check(request: Request) -> None:
        given = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if given != expected:
            raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"expected a body of "
                                f"type {expected}, got {given or 'no content type'!r}")

    return check


@router.post("/rebalance", responses=ERRORS,
             dependencies=[Depends(require_content_type("application/json"))])
def rebalance_json(body: RebalanceRequest,
                   settings: Annotated[Settings, Depends(get_settings)]) -> RebalanceResponse:
    """Plan the experts of a JSON load matrix ``weight`` [layers][experts]."""
    return rebalance(torch.tensor(body.weight, dtype=torch.float32), body.params(), settings)


@router.post("/rebalance/csv", responses=ERRORS,
             dependencies=[Depends(require_content_type("multipart/form-data"))])
def rebalance_csv(file: Annotated[UploadFile, File(description="CSV: one row per layer, one "
                                                               "column per expert")],
                  params: Annotated[RebalanceParams, Form()],
                  settings: Annotated[Settings, Depends(get_settings)]) -> RebalanceResponse:
    """Plan the experts of an uploaded CSV load matrix; the parameters are form fields."""
    return rebalance(read_csv_upload(file, settings.max_upload_bytes), params, settings)
