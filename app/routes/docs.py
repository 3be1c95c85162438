"""``GET /docs``: Swagger UI from the ``swagger-ui-bundle`` package, so it renders offline."""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

SWAGGER_UI_DIR = Path(swagger_ui_bundle.swagger_ui_path)
SWAGGER_UI_URL = "/vendor/swagger-ui"

router = APIRouter()


@router.get("/docs", include_in_schema=False)
def swagger_ui() -> HTMLResponse:
    """The interactive API reference, with every asset served by this app."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title="EPLB API",
                               swagger_js_url=f"{SWAGGER_UI_URL}/swagger-ui-bundle.js",
                               swagger_css_url=f"{SWAGGER_UI_URL}/swagger-ui.css",
                               swagger_favicon_url=f"{SWAGGER_UI_URL}/favicon-32x32.png")
