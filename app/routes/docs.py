"""``GET /docs``: Swagger UI from the ``openapi-ui-bundles`` package, so it renders offline.

The bundle is Swagger UI 5, which reads the OpenAPI 3.1 documents FastAPI writes (the older
``swagger-ui-bundle`` package ships Swagger UI 4, which refuses them).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from openapi_ui_bundles import swagger_ui

SWAGGER_UI_DIR = swagger_ui.static_path
SWAGGER_UI_URL = "/vendor/swagger-ui"

router = APIRouter()


@router.get("/docs", include_in_schema=False)
def swagger_ui_page() -> HTMLResponse:
    """The interactive API reference, with every asset served by this app."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title="EPLB API",
                               swagger_js_url=f"{SWAGGER_UI_URL}/swagger-ui-bundle.js",
                               swagger_css_url=f"{SWAGGER_UI_URL}/swagger-ui.css",
                               swagger_favicon_url=f"{SWAGGER_UI_URL}/favicon-32x32.png",
                               # No badge fetched from validator.swagger.io.
                               swagger_ui_parameters={"validatorUrl": None})
