"""The dashboard page: ``GET /`` renders the Jinja2 template with the core's own presets,
algorithm and policy names, the API's defaults (the expert size in MiB) and the server's
limits, so the page restates no rule."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from eplb_core import ALGORITHMS, POLICIES, PRESETS
from eplb_core.cluster import Preset

from ..deps import SettingsDep, size_text
from ..schemas import RebalanceParams

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
DEFAULT_PRESET = "deepseek-v3-prefill"
MIB = 1 << 20

router = APIRouter(tags=["dashboard"])
templates = Jinja2Templates(directory=TEMPLATES_DIR)
templates.env.filters["size_text"] = size_text


def preset_label(preset: Preset) -> str:
    """A preset's name for people: its model, and what its name adds ("DeepSeek-V3 decode")."""
    model = preset.model
    variant = (
        preset.name[len(model) :].strip("-")
        if preset.name.lower().startswith(model.lower())
        else preset.name
    )
    return f"{model} {variant}".strip()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def dashboard(request: Request, settings: SettingsDep) -> HTMLResponse:
    """The dashboard: load a matrix, pick a cluster shape, rebalance, download the plan."""
    defaults = {
        name: RebalanceParams.model_fields[name].default
        for name in ("algorithm", "policy", "seed", "spill_slots")
    }
    expert_bytes = RebalanceParams.model_fields["expert_bytes"].default
    defaults["expert_mib"] = f"{expert_bytes / MIB:g}"
    return templates.TemplateResponse(
        request,
        "dashboard.html",
        {
            "presets": [(preset, preset_label(preset)) for preset in PRESETS.values()],
            "algorithms": ALGORITHMS,
            "policies": POLICIES,
            "defaults": defaults,
            "default_preset": PRESETS[DEFAULT_PRESET],
            "settings": settings,
            "page_config": {
                "max_upload_bytes": settings.max_upload_bytes,
                "max_upload_text": size_text(settings.max_upload_bytes),
                "max_windows": settings.max_windows,
                "max_replicas": settings.max_replicas,
                "max_sweep_points": settings.max_sweep_points,
                "expert_bytes": expert_bytes,
            },
        },
    )
