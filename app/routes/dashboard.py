"""The dashboard page's data: the bundled example, a preview of an upload, and a charted plan.

The routes reuse the REST service's upload reading and rebalancing; they add the figures
(``app.charts``) that the page draws with ``Plotly.newPlot``. All are plain ``def`` routes,
run in FastAPI's thread pool.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from eplb_core.io import format_csv_matrix
from eplb_core.synthetic import zipf_loads

from .. import charts
from ..config import Settings, get_settings
from ..schemas import RebalanceParams, RebalanceResponse
from ..service import rebalance
from ..uploads import read_csv_upload
from .rebalance import ERRORS, require_content_type

EXAMPLE_SEED = 2024
EXAMPLE_FILENAME = "deepseek-v3-example.csv"

router = APIRouter(prefix="/dashboard", tags=["dashboard"])

MULTIPART = [Depends(require_content_type("multipart/form-data"))]
CsvFile = Annotated[UploadFile, File(description="CSV: one row per layer, one column per expert")]


class Preview(BaseModel):
    """What the page shows as soon as a load matrix is loaded."""

    num_layers: int
    num_experts: int
    total_tokens: float = Field(description="the sum of all loads")
    figure: dict[str, Any] = Field(description="Plotly figure: loads, layers x experts")


class ChartedPlan(BaseModel):
    """A rebalance result and the Plotly figures that show it."""

    result: RebalanceResponse
    figures: dict[str, dict[str, Any]] = Field(
        description="Plotly figures: gpu and node (before/after heatmaps), balancedness")


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
def preview(file: CsvFile, settings: Annotated[Settings, Depends(get_settings)]) -> Preview:
    """The shape, total tokens and a heatmap of an uploaded CSV load matrix."""
    weight = read_csv_upload(file, settings.max_upload_bytes)
    num_layers, num_experts = weight.shape
    return Preview(num_layers=num_layers, num_experts=num_experts,
                   total_tokens=float(weight.double().sum()),
                   figure=charts.load_heatmap(weight.numpy()))


@router.post("/rebalance", responses=ERRORS, dependencies=MULTIPART)
def rebalance_charted(file: CsvFile, params: Annotated[RebalanceParams, Form()],
                      settings: Annotated[Settings, Depends(get_settings)]) -> ChartedPlan:
    """``POST /rebalance/csv``'s plan, with the dashboard's figures of it."""
    result = rebalance(read_csv_upload(file, settings.max_upload_bytes), params, settings)
    return ChartedPlan(result=result, figures=charts.rebalance_figures(result))
