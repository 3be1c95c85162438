"""``POST /evaluate`` (JSON) and ``POST /evaluate/upload`` (files): score a placement in use on
loads without planning, and a second placement beside it (the moves between them and the
expected MoE speed-up)."""

from __future__ import annotations

from typing import Annotated

import torch
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from eplb_core.io import LoadFile

from .. import service
from ..deps import (
    JSON_BODY,
    MULTIPART,
    JobDep,
    JsonBodyDep,
    LoadsDep,
    OptionalPlacement,
    PlacementToScore,
    PoolDep,
    SettingsDep,
    known_form_fields,
    parse_json,
    read_placement_file,
)
from ..schemas import ClusterParams, EvaluateRequest, EvaluateResponse
from . import answers, dumps, json_request, json_response, tensor

router = APIRouter(tags=["evaluate"])


@router.post(
    "/evaluate",
    response_class=Response,
    responses=answers(EvaluateResponse),
    dependencies=JSON_BODY,
    openapi_extra=json_request(EvaluateRequest),
)
async def evaluate_json(
    request: Request, body: JsonBodyDep, settings: SettingsDep, job: JobDep, pool: PoolDep
) -> Response:
    """Score the JSON ``placement`` [layers][slots] on ``weight`` [layers][experts], and
    ``compare`` beside it when given."""

    def work() -> bytes:
        parsed = parse_json(EvaluateRequest, body)
        compare = None if parsed.compare is None else tensor(parsed.compare)
        return dumps(
            service.score_placement(
                LoadFile(tensor(parsed.weight, torch.float64)),
                parsed.params(),
                settings,
                tensor(parsed.placement),
                compare,
            ).as_dict(tensors=True)
        )

    return json_response(await pool.run(job, work, request))


@router.post(
    "/evaluate/upload",
    response_class=Response,
    responses=answers(EvaluateResponse),
    dependencies=[
        *MULTIPART,
        Depends(known_form_fields(ClusterParams, "file", "placement", "compare")),
    ],
)
async def evaluate_upload(
    request: Request,
    loads: LoadsDep,
    placement: PlacementToScore,
    params: Annotated[ClusterParams, Form()],
    settings: SettingsDep,
    job: JobDep,
    pool: PoolDep,
    compare: OptionalPlacement = None,
) -> Response:
    """Score an uploaded placement on an uploaded load file (a series summed over its steps);
    the cluster is given as form fields."""

    def work() -> bytes:
        second = None if compare is None else read_placement_file(compare, settings)
        return dumps(
            service.score_placement(
                loads, params, settings, read_placement_file(placement, settings), second
            ).as_dict(tensors=True)
        )

    return json_response(await pool.run(job, work, request))
