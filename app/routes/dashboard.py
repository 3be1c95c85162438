"""The dashboard page's data: the bundled example, a preview of an upload (kept on the server
for a while, so that each press sends an id instead of the file again), a charted plan, a
charted replay (with its frontier under move budgets), a charted placement scored without
planning, a charted sweep (the advisor, streamed with its progress), one layer in detail, and
the cluster check behind the form's inline messages.

The routes reuse the service's planning, replay, scoring and sweeps; they add the figures
(``app.charts``) that the page draws with Plotly (``static/dashboard/charts.js``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile, status
from fastapi.responses import Response
from pydantic import BaseModel, Field

from eplb_core import Cluster
from eplb_core.cost import check_size
from eplb_core.errors import EPLBError, LoadError, OptionError
from eplb_core.io import LoadFile, format_csv_matrix
from eplb_core.metrics import replica_counts, trivial_placement
from eplb_core.migration import validate_placement
from eplb_core.plan import sum_steps
from eplb_core.sweep import policy_choice
from eplb_core.synthetic import EXAMPLE_SEED, zipf_loads

from .. import charts, service
from ..config import Settings
from ..deps import (
    MULTIPART,
    CacheDep,
    JobDep,
    OptionalPlacement,
    PlacementDep,
    PlacementToScore,
    PoolDep,
    SettingsDep,
    known_form_fields,
    read_loads_file,
    read_placement_file,
)
from ..schemas import (
    ClusterCheck,
    ClusterParams,
    ClusterQuery,
    ErrorResponse,
    EvaluateResponse,
    PolicyChoice,
    RebalanceParams,
    RebalanceResponse,
    ReplayParams,
    ReplayResponse,
    SweepParams,
    SweepResponse,
)
from . import answer, answers, dumps, json_response

EXAMPLE_FILENAME = "deepseek-v3-example.csv"

router = APIRouter(prefix="/dashboard", tags=["dashboard"])
GONE: dict[int | str, dict[str, Any]] = {
    status.HTTP_410_GONE: {
        "model": ErrorResponse,
        "description": "upload_id names no file the server keeps: send the file again",
    }
}


class Preview(BaseModel):
    """What the page shows as soon as a load matrix is loaded."""

    upload_id: str | None = Field(
        description="send it instead of the file to plan the same "
        "loads again; null when the file is too large to "
        "keep"
    )
    num_layers: int
    num_experts: int
    num_steps: int | None = Field(description="the steps of a time series; null for one window")
    total_tokens: float = Field(description="the sum of all loads")
    figure: dict[str, Any] = Field(
        description="Plotly figure: loads (summed over the steps of a series), layers x experts"
    )


class ChartedPlan(BaseModel):
    """A rebalance result and the Plotly figures that show it."""

    result: RebalanceResponse = Field(description="the /rebalance answer, without log2phy")
    upload_id: str | None = Field(description="the id to send instead of the file next time")
    figures: dict[str, dict[str, Any] | None] = Field(
        description="Plotly figures (app.charts): gpu and node, before/after heatmaps in two "
        'views, {"views": {"tokens": figure, "ratio": figure}, "view": the one '
        "that shows the imbalance left} (node is null when the GPUs do not split "
        "evenly over the nodes); balancedness, a figure"
    )


class ChartedReplay(BaseModel):
    """A replay and the Plotly figure that shows it."""

    result: ReplayResponse
    upload_id: str | None = Field(description="the id to send instead of the file next time")
    figure: dict[str, Any] = Field(
        description="Plotly figure: balancedness per window, on the "
        "next window and in-sample, per strategy"
    )
    frontier: dict[str, Any] | None = Field(
        description="Plotly figure: next-window balancedness against moves per rebalance, a "
        "point per budget and algorithm; null when no budgets were asked"
    )


Name = Annotated[str | None, Field(None, max_length=80, description="what the page calls it")]


class EvaluateForm(ClusterParams):
    """``POST /dashboard/evaluate``'s fields: the cluster, and what the page calls the two
    placements (default their file names)."""

    placement_name: Name
    compare_name: Name


class ChartedEvaluation(BaseModel):
    """A placement scored without planning, and the Plotly figures that show it."""

    result: EvaluateResponse = Field(description="the /evaluate/upload answer")
    upload_id: str | None = Field(description="the id to send instead of the file next time")
    figures: dict[str, dict[str, Any]] = Field(
        description='Plotly figures: gpu (per-GPU loads, {"views": ..., "view": ...}; beside '
        "compare's when given) and balancedness (per layer, under the bound)"
    )


class DashboardSweepParams(SweepParams):
    """``POST /dashboard/sweep``'s fields: ``/sweep/upload``'s, and the choice in use, whose
    point the charts ring: its policy (``current_policy``, as ``policies`` names them; default
    ``policy`` with ``spill_slots``) and slot count (``current_replicas``)."""

    current_policy: PolicyChoice | None = None
    current_replicas: int | None = Field(None, gt=0, le=2**31 - 1)

    def current(self) -> tuple[str, int]:
        """The policy in use and its spill slots."""
        if self.current_policy is None:
            return self.policy, self.spill_slots
        return policy_choice(self.current_policy, self.spill_slots)


class ChartedSweep(BaseModel):
    """A sweep and the advisor's Plotly figures of it."""

    result: SweepResponse = Field(description="the /sweep/upload answer")
    upload_id: str | None = Field(description="the id to send instead of the file next time")
    figures: dict[str, dict[str, Any] | None] = Field(
        description="Plotly figures: slots (balancedness and extra memory per GPU against "
        "slots per GPU), windows (next-window balancedness against moves per "
        "1,000 steps; null without windows), policies (balancedness against nodes "
        "per token; null without nodes per token)"
    )


class LayerForm(ClusterParams):
    """``POST /dashboard/layer``'s fields: the cluster, the layer, and what the page calls the
    placement before and after."""

    layer: int = Field(ge=0, le=2**31 - 1, description="the layer, from 0")
    before_name: Name
    after_name: Name


class LayerPlacement(BaseModel):
    """One placement's figures in the layer."""

    name: str
    gpu_load: list[float]
    balancedness: float
    max_over_mean: float
    nodes_per_token: float | None
    replicas: list[int] = Field(description="replicas of each expert")


class HotExpert(BaseModel):
    expert: int
    tokens: float
    share: float = Field(description="of the layer's tokens")
    replicas_before: int
    replicas_after: int | None
    tokens_per_replica: float = Field(description="after, else before")


class LayerDetail(BaseModel):
    """One layer of the loads under the placement before and, optionally, after."""

    layer: int
    num_layers: int
    num_experts: int
    tokens: float
    loads: list[float] = Field(description="tokens of each expert")
    before: LayerPlacement
    after: LayerPlacement | None
    moves: int | None = Field(description="slots whose expert differs, before to after")
    bound: float = Field(description="no placement is more balanced in this layer")
    hottest: list[HotExpert]


class ChartedLayer(BaseModel):
    result: LayerDetail
    upload_id: str | None
    figures: dict[str, dict[str, Any]] = Field(
        description="Plotly figures: gpu (each GPU's load, before and after) and experts (each "
        "expert's load and replicas)"
    )


@lru_cache(maxsize=1)
def example_csv() -> str:
    """The bundled sample: DeepSeek-V3 shaped (58 layers x 256 experts) Zipf loads."""
    return format_csv_matrix(zipf_loads(seed=EXAMPLE_SEED))


@router.get("/example.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def example() -> Response:
    """A deterministic 58 x 256 load matrix to try the dashboard with."""
    return Response(
        example_csv(),
        media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{EXAMPLE_FILENAME}"'},
    )


@router.get("/check", response_model=ClusterCheck)
def check(params: Annotated[ClusterQuery, Query()], settings: SettingsDep) -> ClusterCheck:
    """Whether a cluster can hold ``num_experts`` experts, and why not: the core's own rules
    and this server's limits, for the form's inline messages."""
    try:
        limits = settings.limits
        limits.check("max_replicas", params.num_replicas, "slots (num_replicas)")
        if params.window and params.num_steps:
            limits.check(
                "max_windows",
                params.num_steps // params.window,
                f"windows of {params.window} steps in {params.num_steps} steps",
            )
        cluster = Cluster(params.num_replicas, params.num_groups, params.num_nodes, params.num_gpus)
        policy = (
            cluster.check(params.num_experts, params.policy, params.spill_slots)
            if (params.num_experts)
            else (cluster.auto_policy if params.policy == "auto" else params.policy)
        )
    except EPLBError as error:
        return ClusterCheck(ok=False, problem=str(error))
    return ClusterCheck(
        ok=True,
        policy=policy,
        slots_per_gpu=cluster.slots_per_gpu,
        gpus_per_node=cluster.gpus_per_node,
    )


@dataclass(frozen=True)
class Upload:
    """The loads a page sent, and the id the server keeps them under (None: too large)."""

    loaded: LoadFile
    upload_id: str | None


async def dashboard_loads(
    settings: SettingsDep,
    cache: CacheDep,
    job: JobDep,
    pool: PoolDep,
    file: Annotated[UploadFile | None, File()] = None,
    upload_id: Annotated[str | None, Form()] = None,
) -> Upload:
    """The loads of ``file`` (kept under a new id), or of a file kept under ``upload_id``
    (410 when it is no longer kept)."""
    if upload_id is not None:
        return Upload(cache.get(upload_id), upload_id)
    if file is None:
        raise LoadError(
            "send the loads as the form field file, or the upload_id a preview answered"
        )
    loaded = await pool.run(job, lambda: read_loads_file(file, settings))
    return Upload(loaded, cache.put(loaded))


DashboardLoads = Annotated[Upload, Depends(dashboard_loads)]


@router.post(
    "/preview",
    response_class=Response,
    responses=answers(Preview),
    dependencies=[*MULTIPART, Depends(known_form_fields(BaseModel, "file"))],
)
async def preview(
    request: Request, loads: DashboardLoads, cache: CacheDep, job: JobDep, pool: PoolDep
) -> Response:
    """The shape, total tokens and a heatmap of an uploaded load file (a series summed), and
    the id to plan it by."""

    def work() -> bytes:
        weight, num_steps = sum_steps(loads.loaded.loads)
        num_layers, num_experts = weight.shape
        return dumps(
            {
                "upload_id": loads.upload_id,
                "num_layers": num_layers,
                "num_experts": num_experts,
                "num_steps": num_steps,
                "total_tokens": float(weight.double().sum()),
                "figure": charts.load_heatmap(weight.cpu().numpy()),
            }
        )

    return json_response(await pool.run(job, work, request))


@router.post(
    "/rebalance",
    response_class=Response,
    responses={**answers(ChartedPlan), **GONE},
    dependencies=[
        *MULTIPART,
        Depends(known_form_fields(RebalanceParams, "file", "upload_id", "placement")),
    ],
)
async def rebalance_charted(
    request: Request,
    loads: DashboardLoads,
    params: Annotated[RebalanceParams, Form()],
    current: PlacementDep,
    settings: SettingsDep,
    job: JobDep,
    pool: PoolDep,
) -> Response:
    """``POST /rebalance/upload``'s plan, with the dashboard's figures of it."""

    def work() -> bytes:
        result = service.plan(loads.loaded, params, settings, current)
        return dumps(
            {
                "result": result.as_dict(log2phy=False, tensors=True),
                "upload_id": loads.upload_id,
                "figures": charts.rebalance_figures(result),
            }
        )

    return json_response(await pool.run(job, work, request))


@router.post(
    "/replay",
    response_class=Response,
    responses={**answers(ChartedReplay), **GONE},
    dependencies=[
        *MULTIPART,
        Depends(known_form_fields(ReplayParams, "file", "upload_id", "placement")),
    ],
)
async def replay_charted(
    request: Request,
    loads: DashboardLoads,
    params: Annotated[ReplayParams, Form()],
    current: PlacementDep,
    settings: SettingsDep,
    job: JobDep,
    pool: PoolDep,
) -> Response:
    """``POST /replay/upload``'s replay, with the dashboard's chart of it."""

    def work() -> bytes:
        result = service.replay_series(loads.loaded, params, settings, current, job.progress)
        return dumps(
            {
                "result": result.as_dict(),
                "upload_id": loads.upload_id,
                "figure": charts.replay_chart(result),
                "frontier": charts.replay_frontier(result),
            }
        )

    return json_response(await pool.run(job, work, request))


@router.post(
    "/evaluate",
    response_class=Response,
    responses={**answers(ChartedEvaluation), **GONE},
    dependencies=[
        *MULTIPART,
        Depends(known_form_fields(EvaluateForm, "file", "upload_id", "placement", "compare")),
    ],
)
async def evaluate_charted(
    request: Request,
    loads: DashboardLoads,
    placement: PlacementToScore,
    params: Annotated[EvaluateForm, Form()],
    settings: SettingsDep,
    job: JobDep,
    pool: PoolDep,
    compare: OptionalPlacement = None,
) -> Response:
    """``POST /evaluate/upload``'s scores of ``placement`` (and ``compare`` beside it) on the
    loads, without planning, with the dashboard's figures of them."""

    def work() -> bytes:
        scored = read_placement_file(placement, settings)
        second = None if compare is None else read_placement_file(compare, settings)
        result = service.score_placement(loads.loaded, params, settings, scored, second)
        titles = (
            params.placement_name or placement.filename or "placement",
            None if compare is None else params.compare_name or compare.filename,
        )
        return dumps(
            {
                "result": result.as_dict(tensors=True),
                "upload_id": loads.upload_id,
                "figures": charts.evaluate_figures(
                    result,
                    scored.cpu().numpy(),
                    None if second is None else second.cpu().numpy(),
                    titles,
                ),
            }
        )

    return json_response(await pool.run(job, work, request))


@router.post(
    "/sweep",
    response_class=Response,
    responses={**answers(ChartedSweep), **GONE},
    dependencies=[
        *MULTIPART,
        Depends(known_form_fields(DashboardSweepParams, "file", "upload_id")),
    ],
)
async def sweep_charted(
    request: Request,
    loads: DashboardLoads,
    params: Annotated[DashboardSweepParams, Form()],
    settings: SettingsDep,
    job: JobDep,
    pool: PoolDep,
) -> Response:
    """``POST /sweep/upload``'s comparison, with the advisor's figures; with ``Accept:
    application/x-ndjson`` it streams ``{"progress": {"done", "total"}}`` lines, then
    ``{"result": {"result", "upload_id", "figures"}}`` or ``{"error": {"status", "detail"}}``,
    and closing the connection stops the sweep. Every check runs first: a refusal is a 4xx."""
    run = await pool.run(job, lambda: service.prepare_sweep(loads.loaded, params, settings))

    def work() -> bytes:
        result = run(job.progress)
        return dumps(
            {
                "result": result.as_dict(),
                "upload_id": loads.upload_id,
                "figures": charts.sweep_figures(result, *params.current(), params.current_replicas),
            }
        )

    return await answer(request, job, pool, work)


@router.post(
    "/layer",
    response_class=Response,
    responses={**answers(ChartedLayer), **GONE},
    dependencies=[
        *MULTIPART,
        Depends(known_form_fields(LayerForm, "file", "upload_id", "placement", "after")),
    ],
)
async def layer_charted(
    request: Request,
    loads: DashboardLoads,
    params: Annotated[LayerForm, Form()],
    settings: SettingsDep,
    job: JobDep,
    pool: PoolDep,
    placement: OptionalPlacement = None,
    after: OptionalPlacement = None,
) -> Response:
    """One layer in detail: each GPU's load and each expert's replicas under ``placement``
    (before: the placement in use; default the one the file carries, else the trivial
    layout) and ``after`` (a plan, optional), and the layer's hottest experts."""

    def work() -> bytes:
        before = None if placement is None else read_placement_file(placement, settings)
        planned = None if after is None else read_placement_file(after, settings)
        detail = layer_detail(
            loads.loaded,
            params,
            settings,
            before=before,
            after=planned,
            before_file=None if placement is None else placement.filename,
            after_file=None if after is None else after.filename,
        )
        figures = charts.layer_figures(
            detail["loads"],
            [detail["before"]["gpu_load"], detail["after"] and detail["after"]["gpu_load"]],
            [detail["before"]["replicas"], detail["after"] and detail["after"]["replicas"]],
            [detail["before"]["name"], detail["after"]["name"] if detail["after"] else ""],
        )
        return dumps({"result": detail, "upload_id": loads.upload_id, "figures": figures})

    return json_response(await pool.run(job, work, request))


def layer_detail(
    loaded: LoadFile,
    params: LayerForm,
    settings: Settings,
    *,
    before: torch.Tensor | None,
    after: torch.Tensor | None,
    before_file: str | None,
    after_file: str | None,
) -> dict[str, Any]:
    """The figures of one layer: the service's scores of the layer alone under each
    placement (``service.score_placement``), the replicas of each expert, the hottest ones."""
    weight, _ = sum_steps(loaded.loads)
    num_layers, num_experts = weight.shape
    layer = params.layer
    if layer >= num_layers:
        raise OptionError(
            f"layer {layer}: the loads have {num_layers} "
            f"{'layer' if num_layers == 1 else 'layers'} (0 to {num_layers - 1})"
        )
    cluster = Cluster(params.num_replicas, params.num_groups, params.num_nodes, params.num_gpus)
    check_size(loaded.loads.shape, cluster, settings.limits)
    cluster.check(num_experts, params.policy)
    in_use, _ = loaded.in_use(before)
    baseline = (
        trivial_placement(num_layers, num_experts, params.num_replicas)
        if in_use is None
        else in_use
    )
    for phy2log in (baseline, after):
        if phy2log is not None:
            validate_placement(phy2log, num_layers, num_experts, params.num_replicas)
    rows = slice(layer, layer + 1)
    one = LoadFile(weight[rows])
    scored = service.score_placement(
        one,
        params,
        settings,
        (baseline if after is None else after)[rows],
        None if after is None else baseline[rows],
    )
    before_scores = scored.placement if after is None else scored.compare
    assert before_scores is not None
    loads = weight[layer].double()
    counted: list[int] = replica_counts(baseline[rows].long(), num_experts)[0].tolist()
    counted_after: list[int] | None = (
        None if after is None else replica_counts(after[rows].long(), num_experts)[0].tolist()
    )
    names = (
        params.before_name
        or before_file
        or ("the placement in use" if in_use is not None else "slot p holds expert p mod E"),
        params.after_name or after_file or "after",
    )

    def figures(scores: Any, name: str, replicas: list[int]) -> dict[str, Any]:
        gpu = scores.gpu_load[0]
        return {
            "name": name,
            "gpu_load": gpu.tolist(),
            "balancedness": float(scores.balancedness[0]),
            "max_over_mean": float(gpu.max() / gpu.mean()) if float(gpu.mean()) > 0 else 1.0,
            "nodes_per_token": None
            if scores.nodes_per_token is None
            else float(scores.nodes_per_token[0]),
            "replicas": replicas,
        }

    total = float(loads.sum())
    hottest = []
    for expert in torch.argsort(loads, descending=True, stable=True)[: charts.HOTTEST].tolist():
        tokens = float(loads[expert])
        replicas_after = None if counted_after is None else counted_after[expert]
        replicas = counted[expert] if replicas_after is None else replicas_after
        hottest.append(
            {
                "expert": expert,
                "tokens": tokens,
                "share": tokens / total if total > 0 else 0.0,
                "replicas_before": counted[expert],
                "replicas_after": replicas_after,
                "tokens_per_replica": tokens / max(replicas, 1),
            }
        )
    return {
        "layer": layer,
        "num_layers": num_layers,
        "num_experts": num_experts,
        "tokens": total,
        "loads": loads.tolist(),
        "before": figures(before_scores, names[0], counted),
        "after": None
        if counted_after is None
        else figures(scored.placement, names[1], counted_after),
        "moves": None if scored.moves is None else scored.moves.total,
        "bound": float(scored.bound[0]),
        "hottest": hottest,
    }
