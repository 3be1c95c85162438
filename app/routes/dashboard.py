"""The dashboard page's data: the bundled example, a preview of an upload (kept on the server
for a while, so that each Rebalance or Replay press sends an id instead of the file again), a
charted plan, a charted replay, and the cluster check behind the form's inline messages.

The routes reuse the service's planning and replay; they add the figures (``app.charts``)
that the page draws with Plotly (``static/dashboard/charts.js``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile, status
from fastapi.responses import Response
from pydantic import BaseModel, Field

from eplb_core import Cluster
from eplb_core.errors import EPLBError, LoadError
from eplb_core.io import format_csv_matrix
from eplb_core.plan import sum_steps
from eplb_core.synthetic import EXAMPLE_SEED, zipf_loads

from .. import charts, service
from eplb_core.io import LoadFile

from ..deps import (MULTIPART, CacheDep, JobDep, PlacementDep, PoolDep, SettingsDep,
                    known_form_fields, read_loads_file)
from ..schemas import (ClusterCheck, ClusterQuery, ErrorResponse, RebalanceParams,
                       RebalanceResponse,
                       ReplayParams, ReplayResponse)
from . import answers, dumps, json_response

EXAMPLE_FILENAME = "deepseek-v3-example.csv"

router = APIRouter(prefix="/dashboard", tags=["dashboard"])
GONE: dict[int | str, dict[str, Any]] = {status.HTTP_410_GONE: {
    "model": ErrorResponse, "description": "upload_id names no file the server keeps: send "
                                           "the file again"}}


class Preview(BaseModel):
    """What the page shows as soon as a load matrix is loaded."""

    upload_id: str | None = Field(description="send it instead of the file to plan the same "
                                              "loads again; null when the file is too large to "
                                              "keep")
    num_layers: int
    num_experts: int
    num_steps: int | None = Field(description="the steps of a time series; null for one window")
    total_tokens: float = Field(description="the sum of all loads")
    figure: dict[str, Any] = Field(description="Plotly figure: loads (summed over the steps of "
                                               "a series), layers x experts")


class ChartedPlan(BaseModel):
    """A rebalance result and the Plotly figures that show it."""

    result: RebalanceResponse = Field(description="the /rebalance answer, without log2phy")
    upload_id: str | None = Field(description="the id to send instead of the file next time")
    figures: dict[str, dict[str, Any] | None] = Field(
        description="Plotly figures (app.charts): gpu and node, before/after heatmaps in two "
                    'views, {"views": {"tokens": figure, "ratio": figure}, "view": the one '
                    "that shows the imbalance left} (node is null when the GPUs do not split "
                    "evenly over the nodes); balancedness, a figure")


class ChartedReplay(BaseModel):
    """A replay and the Plotly figure that shows it."""

    result: ReplayResponse
    upload_id: str | None = Field(description="the id to send instead of the file next time")
    figure: dict[str, Any] = Field(description="Plotly figure: balancedness per window, on the "
                                               "next window and in-sample, per strategy")


@lru_cache(maxsize=1)
def example_csv() -> str:
    """The bundled sample: DeepSeek-V3 shaped (58 layers x 256 experts) Zipf loads."""
    return format_csv_matrix(zipf_loads(seed=EXAMPLE_SEED))


@router.get("/example.csv", response_class=Response,
            responses={200: {"content": {"text/csv": {}}}})
def example() -> Response:
    """A deterministic 58 x 256 load matrix to try the dashboard with."""
    return Response(example_csv(), media_type="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{EXAMPLE_FILENAME}"'})


@router.get("/check", response_model=ClusterCheck)
def check(params: Annotated[ClusterQuery, Query()], settings: SettingsDep) -> ClusterCheck:
    """Whether a cluster can hold ``num_experts`` experts, and why not: the core's own rules
    and this server's limits, for the form's inline messages."""
    try:
        limits = settings.limits
        limits.check("max_replicas", params.num_replicas, "slots (num_replicas)")
        if params.window and params.num_steps:
            limits.check("max_windows", params.num_steps // params.window,
                         f"windows of {params.window} steps in {params.num_steps} steps")
        cluster = Cluster(params.num_replicas, params.num_groups, params.num_nodes,
                          params.num_gpus)
        policy = cluster.check(params.num_experts, params.policy, params.spill_slots) if (
            params.num_experts) else (cluster.auto_policy if params.policy == "auto"
                                      else params.policy)
    except EPLBError as error:
        return ClusterCheck(ok=False, problem=str(error))
    return ClusterCheck(ok=True, policy=policy, slots_per_gpu=cluster.slots_per_gpu,
                        gpus_per_node=cluster.gpus_per_node)


@dataclass(frozen=True)
class Upload:
    """The loads a page sent, and the id the server keeps them under (None: too large)."""

    loaded: LoadFile
    upload_id: str | None


async def dashboard_loads(settings: SettingsDep, cache: CacheDep, job: JobDep, pool: PoolDep,
                          file: Annotated[UploadFile | None, File()] = None,
                          upload_id: Annotated[str | None, Form()] = None) -> Upload:
    """The loads of ``file`` (kept under a new id), or of a file kept under ``upload_id``
    (410 when it is no longer kept)."""
    if upload_id is not None:
        return Upload(cache.get(upload_id), upload_id)
    if file is None:
        raise LoadError("send the loads as the form field file, or the upload_id a preview "
                        "answered")
    loaded = await pool.run(job, lambda: read_loads_file(file, settings))
    return Upload(loaded, cache.put(loaded))


DashboardLoads = Annotated[Upload, Depends(dashboard_loads)]


@router.post("/preview", response_class=Response, responses=answers(Preview),
             dependencies=[*MULTIPART, Depends(known_form_fields(BaseModel, "file"))])
async def preview(request: Request, loads: DashboardLoads, cache: CacheDep, job: JobDep,
                  pool: PoolDep) -> Response:
    """The shape, total tokens and a heatmap of an uploaded load file (a series summed), and
    the id to plan it by."""

    def work() -> bytes:
        weight, num_steps = sum_steps(loads.loaded.loads)
        num_layers, num_experts = weight.shape
        return dumps({"upload_id": loads.upload_id, "num_layers": num_layers,
                      "num_experts": num_experts, "num_steps": num_steps,
                      "total_tokens": float(weight.double().sum()),
                      "figure": charts.load_heatmap(weight.cpu().numpy())})

    return json_response(await pool.run(job, work, request))


@router.post("/rebalance", response_class=Response, responses={**answers(ChartedPlan), **GONE},
             dependencies=[*MULTIPART, Depends(known_form_fields(
                 RebalanceParams, "file", "upload_id", "placement"))])
async def rebalance_charted(request: Request, loads: DashboardLoads,
                            params: Annotated[RebalanceParams, Form()], current: PlacementDep,
                            settings: SettingsDep, job: JobDep, pool: PoolDep) -> Response:
    """``POST /rebalance/upload``'s plan, with the dashboard's figures of it."""

    def work() -> bytes:
        result = service.plan(loads.loaded, params, settings, current)
        return dumps({"result": result.as_dict(log2phy=False, tensors=True),
                      "upload_id": loads.upload_id,
                      "figures": charts.rebalance_figures(result)})

    return json_response(await pool.run(job, work, request))


@router.post("/replay", response_class=Response, responses={**answers(ChartedReplay), **GONE},
             dependencies=[*MULTIPART, Depends(known_form_fields(
                 ReplayParams, "file", "upload_id", "placement"))])
async def replay_charted(request: Request, loads: DashboardLoads,
                         params: Annotated[ReplayParams, Form()], current: PlacementDep,
                         settings: SettingsDep, job: JobDep, pool: PoolDep) -> Response:
    """``POST /replay/upload``'s replay, with the dashboard's chart of it."""

    def work() -> bytes:
        result = service.replay_series(loads.loaded, params, settings, current, job.progress)
        return dumps({"result": result.as_dict(), "upload_id": loads.upload_id,
                      "figure": charts.replay_chart(result)})

    return json_response(await pool.run(job, work, request))
