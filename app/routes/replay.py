"""``POST /replay`` (JSON) and ``POST /replay/upload`` (a load file): plan on each window of a
time series and score on the next, for "none", greedy and hybrid.

The work runs in the pool; a client that goes away stops the replay between windows.
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
from ..schemas import ReplayParams, ReplayRequest, ReplayResponse
from . import answers, dumps, json_request, json_response, tensor

router = APIRouter(tags=["replay"])


@router.post(
    "/replay",
    response_class=Response,
    responses=answers(ReplayResponse),
    dependencies=JSON_BODY,
    openapi_extra=json_request(ReplayRequest),
)
async def replay_json(
    request: Request, body: JsonBodyDep, settings: SettingsDep, job: JobDep, pool: PoolDep
) -> Response:
    """Replay a JSON time series ``series`` [steps][layers][experts] in windows of ``window``
    steps, starting from the placement in use ``current`` when given."""

    def work() -> bytes:
        parsed = parse_json(ReplayRequest, body)
        current = None if parsed.current is None else tensor(parsed.current)
        series = tensor(parsed.series, torch.float64)
        return dumps(
            service.replay_series(
                LoadFile(series), parsed.params(), settings, current, job.progress
            ).as_dict()
        )

    return json_response(await pool.run(job, work, request))


@router.post(
    "/replay/upload",
    response_class=Response,
    responses=answers(ReplayResponse),
    dependencies=MULTIPART,
)
async def replay_upload(
    request: Request,
    loads: LoadsDep,
    params: Annotated[ReplayParams, Form()],
    current: PlacementDep,
    settings: SettingsDep,
    job: JobDep,
    pool: PoolDep,
) -> Response:
    """Replay an uploaded time series (3-D); the parameters are form fields."""

    def work() -> bytes:
        return dumps(
            service.replay_series(loads, params, settings, current, job.progress).as_dict()
        )

    return json_response(await pool.run(job, work, request))
