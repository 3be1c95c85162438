"""``POST /export/...``: a placement as the files engines and users load, all built by
``eplb_core.io``: SGLang's ``physical_to_logical_map`` (JSON and ``.pt``), the plan file
(``phy2log``, ``log2phy``, ``logcnt``) and ``phy2log`` as CSV. The dashboard's downloads come
from here too, so the page and the CLI write the same files."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from eplb_core import Plan
from eplb_core.io import (
    check_placement_shape,
    format_csv_matrix,
    map_to_json,
    map_to_pt,
    plan_to_json,
)

from ..deps import JSON_BODY, JobDep, JsonBodyDep, PoolDep, SettingsDep, parse_json
from ..schemas import PlacementBody
from . import ERRORS, json_request, tensor

router = APIRouter(prefix="/export", tags=["export"])

FILES: dict[str, tuple[str, Callable[[Plan], str | bytes]]] = {
    "physical_to_logical_map.json": ("application/json", lambda plan: map_to_json(plan.phy2log)),
    "physical_to_logical_map.pt": (
        "application/octet-stream",
        lambda plan: map_to_pt(plan.phy2log),
    ),
    "plan.json": (
        "application/json",
        lambda plan: plan_to_json(plan.phy2log, plan.log2phy, plan.logcnt),
    ),
    "phy2log.csv": ("text/csv", lambda plan: format_csv_matrix(plan.phy2log)),
}
DESCRIPTIONS = {
    "physical_to_logical_map.json": '``{"physical_to_logical_map": [[...]]}``: the placement '
    "as SGLang's --init-expert-location reads it.",
    "physical_to_logical_map.pt": "The same map saved with ``torch.save``: a dict with one int64 "
    "[layers, slots] tensor, loadable with "
    "``torch.load(weights_only=True)``.",
    "plan.json": "The plan file: ``phy2log``, ``log2phy`` (each expert's slots in slot order, "
    "padded with -1) and ``logcnt``, as ``eplb rebalance -o`` writes it.",
    "phy2log.csv": "``phy2log`` as CSV: a row per layer, a column per slot.",
}


def _route(name: str) -> None:
    media_type, write = FILES[name]
    responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {media_type: {}}, "description": "the file"},
        **ERRORS,
    }

    async def export(
        request: Request, body: JsonBodyDep, settings: SettingsDep, job: JobDep, pool: PoolDep
    ) -> Response:
        def work() -> str | bytes:
            phy2log = tensor(parse_json(PlacementBody, body).phy2log)
            check_placement_shape(tuple(phy2log.shape), settings.limits)
            return write(Plan.from_placement(phy2log))

        return Response(
            await pool.run(job, work, request),
            media_type=media_type,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    export.__doc__ = DESCRIPTIONS[name]
    router.add_api_route(
        f"/{name}",
        export,
        methods=["POST"],
        response_class=Response,
        responses=responses,
        dependencies=JSON_BODY,
        openapi_extra=json_request(PlacementBody),
        name=f"export {name}",
    )


for _name in FILES:
    _route(_name)
