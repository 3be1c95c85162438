"""The dashboard page's data: the bundled example, a preview of an upload, a charted plan and a
charted replay.

The routes reuse the REST service's upload reading, rebalancing and replay; they add the
figures (``app.charts``) that the page draws with ``Plotly.newPlot``. All are plain ``def``
routes, run in FastAPI's thread pool.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response
from pydantic import BaseModel, Field

from eplb_core.io import format_csv_matrix
from eplb_core.plan import sum_steps
from eplb_core.synthetic import zipf_loads

from .. import charts
from ..config import Settings, get_settings
from ..schemas import RebalanceParams, RebalanceResponse, ReplayParams, ReplayResponse
from ..service import rebalance, replay_series
from ..uploads import read_loads_upload, read_placement_upload
from .rebalance import ERRORS, MULTIPART, LoadsFile, PlacementFile

EXAMPLE_SEED = 2024
EXAMPLE_FILENAME = "deepseek-v3-example.csv"

router = APIRouter(prefix="/dashboard", tags=["dashboard"])


class Preview(BaseModel):
    """What the page shows as soon as a load matrix is loaded."""

    num_layers: int
    num_experts: int
    num_steps: int | None = Field(description="the steps of a time series; null for one window")
    total_tokens: float = Field(description="the sum of all loads")
    figure: dict[str, Any] = Field(description="Plotly figure: loads (summed over the steps of "
                                               "a series), layers x experts")


class ChartedPlan(BaseModel):
    """A rebalance result and the Plotly figures that show it."""

    result: RebalanceResponse
    figures: dict[str, dict[str, Any] | None] = Field(
        description="Plotly figures: gpu and node (before/after heatmaps; node is null when "
                    "the GPUs do not split evenly over the nodes), balancedness")


class ChartedReplay(BaseModel):
    """A replay and the Plotly figure that shows it."""

    result: ReplayResponse
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


@router.post("/preview", responses=ERRORS, dependencies=MULTIPART)
def preview(file: LoadsFile, settings: Annotated[Settings, Depends(get_settings)]) -> Preview:
    """The shape, total tokens and a heatmap of an uploaded load file (a series summed)."""
    weight, num_steps = sum_steps(read_loads_upload(file, settings.max_upload_bytes))
    num_layers, num_experts = weight.shape
    return Preview(num_layers=num_layers, num_experts=num_experts, num_steps=num_steps,
                   total_tokens=float(weight.double().sum()),
                   figure=charts.load_heatmap(weight.numpy()))


@router.post("/rebalance", responses=ERRORS, dependencies=MULTIPART)
def rebalance_charted(file: LoadsFile, params: Annotated[RebalanceParams, Form()],
                      settings: Annotated[Settings, Depends(get_settings)],
                      placement: PlacementFile = None) -> ChartedPlan:
    """``POST /rebalance/upload``'s plan, with the dashboard's figures of it."""
    result = rebalance(read_loads_upload(file, settings.max_upload_bytes), params, settings,
                       read_placement_upload(placement, settings.max_upload_bytes))
    return ChartedPlan(result=result.as_dict(), figures=charts.rebalance_figures(result))


@router.post("/replay", responses=ERRORS, dependencies=MULTIPART)
def replay_charted(file: LoadsFile, params: Annotated[ReplayParams, Form()],
                   settings: Annotated[Settings, Depends(get_settings)],
                   placement: PlacementFile = None) -> ChartedReplay:
    """``POST /replay/upload``'s replay, with the dashboard's chart of it."""
    result = replay_series(read_loads_upload(file, settings.max_upload_bytes), params, settings,
                           read_placement_upload(placement, settings.max_upload_bytes))
    return ChartedReplay(result=result.as_dict(), figure=charts.replay_chart(result))
