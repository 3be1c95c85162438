"""``POST /sweep`` (JSON) and ``POST /sweep/upload`` (a load file): the deployment advisor's
comparison of slot counts, rebalance windows and policies, one point per choice.

A sweep can take seconds: with ``Accept: application/x-ndjson`` the answer streams
``{"progress": {"done", "total"}}`` lines as plans are made, then ``{"result": ...}`` (or
``{"error": {"status", "detail"}}``); closing the connection stops the sweep.
"""

from __future__ import annotations

from typing import Annotated

import torch
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from eplb_core.io import LoadFile

from .. import service
from ..config import Settings
from ..deps import (
    JSON_BODY,
    MULTIPART,
    JobDep,
    JsonBodyDep,
    LoadsDep,
    PoolDep,
    SettingsDep,
    known_form_fields,
    parse_json,
)
from ..pool import Job, WorkPool
from ..schemas import SweepParams, SweepRequest, SweepResponse
from . import NDJSON, answer, answers, dumps, json_request, tensor

router = APIRouter(tags=["sweep"])
RESPONSES = {
    **answers(SweepResponse),
    200: {
        "model": SweepResponse,
        "content": {
            NDJSON: {
                "schema": {
                    "type": "string",
                    "description": f"with Accept: {NDJSON}: progress lines, then the result",
                }
            }
        },
    },
}


async def _answer(
    request: Request,
    job: Job,
    pool: WorkPool,
    loaded: LoadFile,
    params: SweepParams,
    settings: Settings,
) -> Response:
    """The sweep as one JSON answer, or streamed with its progress when the client asks; in
    both cases every check runs first, so a refusal is a 4xx."""
    run = await pool.run(job, lambda: service.prepare_sweep(loaded, params, settings))

    def work() -> bytes:
        return dumps(run(job.progress).as_dict())

    return await answer(request, job, pool, work)


@router.post(
    "/sweep",
    response_class=Response,
    responses=RESPONSES,
    dependencies=JSON_BODY,
    openapi_extra=json_request(SweepRequest),
)
async def sweep_json(
    request: Request, body: JsonBodyDep, settings: SettingsDep, job: JobDep, pool: PoolDep
) -> Response:
    """Compare slot counts (``num_replicas``), rebalance ``windows`` and ``policies`` on the
    JSON loads: ``weight`` [layers][experts] or ``series`` [steps][layers][experts]."""

    def read() -> tuple[LoadFile, SweepParams]:
        parsed = parse_json(SweepRequest, body)
        return LoadFile(tensor(parsed.loads(), torch.float64)), parsed.params()

    loaded, params = await pool.run(job, read)
    return await _answer(request, job, pool, loaded, params, settings)


@router.post(
    "/sweep/upload",
    response_class=Response,
    responses=RESPONSES,
    dependencies=[*MULTIPART, Depends(known_form_fields(SweepParams, "file"))],
)
async def sweep_upload(
    request: Request,
    loads: LoadsDep,
    params: Annotated[SweepParams, Form()],
    settings: SettingsDep,
    job: JobDep,
    pool: PoolDep,
) -> Response:
    """The same comparison on an uploaded load file; lists are repeated form fields
    (``num_replicas=256&num_replicas=288``)."""
    return await _answer(request, job, pool, loads, params, settings)
