"""``POST /rebalance`` (JSON) and ``POST /rebalance/upload`` (a load file, CSV, JSON or ``.pt``,
and optionally the placement in use): a plan, its effect and its moves. ``POST /rebalance/csv``
is the upload route's first name, kept for the clients that use it.

The work (parsing, planning, serialising) runs in the pool; the event loop only waits.
"""

from __future__ import annotations

from typing import Annotated

import torch
from fastapi import APIRouter, Form, Request
from fastapi.responses import Response

from eplb_core.io import LoadFile

from .. import service
from ..deps import (
    JSON_BODY,
    MULTIPART,
    JobDep,
    JsonBodyDep,
    LoadsDep,
    PlacementDep,
    PoolDep,
    SettingsDep,
    parse_json,
)
from ..schemas import RebalanceParams, RebalanceRequest, RebalanceResponse
from . import answers, dumps, json_request, json_response, tensor

router = APIRouter(tags=["rebalance"])


@router.post(
    "/rebalance",
    response_class=Response,
    responses=answers(RebalanceResponse),
    dependencies=JSON_BODY,
    openapi_extra=json_request(RebalanceRequest),
)
async def rebalance_json(
    request: Request, body: JsonBodyDep, settings: SettingsDep, job: JobDep, pool: PoolDep
) -> Response:
    """Plan the experts of a JSON load matrix ``weight`` [layers][experts], starting from the
    placement in use ``current`` when given."""

    def work() -> bytes:
        parsed = parse_json(RebalanceRequest, body)
        current = None if parsed.current is None else tensor(parsed.current)
        weight = tensor(parsed.weight, torch.float64)
        return dumps(
            service.plan(LoadFile(weight), parsed.params(), settings, current).as_dict(tensors=True)
        )

    return json_response(await pool.run(job, work, request))


@router.post(
    "/rebalance/upload",
    response_class=Response,
    responses=answers(RebalanceResponse),
    dependencies=MULTIPART,
)
@router.post(
    "/rebalance/csv",
    response_class=Response,
    responses=answers(RebalanceResponse),
    summary="Rebalance Upload (first name)",
    dependencies=MULTIPART,
)
async def rebalance_upload(
    request: Request,
    loads: LoadsDep,
    params: Annotated[RebalanceParams, Form()],
    current: PlacementDep,
    settings: SettingsDep,
    job: JobDep,
    pool: PoolDep,
) -> Response:
    """Plan the experts of an uploaded load file; the parameters are form fields.

    A time series is summed over its steps, and ``num_steps`` says how many.
    """

    def work() -> bytes:
        return dumps(service.plan(loads, params, settings, current).as_dict(tensors=True))

    return json_response(await pool.run(job, work, request))
