"""The dashboard page: ``GET /`` renders the Jinja2 template with the core's own presets,
algorithm and policy names, and the server's limits, so the page restates no rule."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from eplb_core import ALGORITHMS, POLICIES, PRESETS

from ..deps import SettingsDep

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"

router = APIRouter(tags=["dashboard"])
templates = Jinja2Templates(directory=TEMPLATES_DIR)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard(request: Request, settings: SettingsDep) -> HTMLResponse:
    """The dashboard: load a matrix, pick a cluster shape, rebalance, download the plan."""
    return templates.TemplateResponse(request, "dashboard.html", {
        "presets": PRESETS, "algorithms": ALGORITHMS, "policies": POLICIES,
        "default_preset": PRESETS["deepseek-v3-prefill"], "settings": settings})
