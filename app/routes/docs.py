"""``GET /docs``: Swagger UI from the ``openapi-ui-bundles`` package, so it renders offline.

The bundle is Swagger UI 5, which reads the OpenAPI 3.1 documents FastAPI writes (the older
``swagger-ui-bundle`` package ships Swagger UI 4, which refuses them). The page starts it from
``static/docs.js``, not an inline script, so the content security policy allows no inline code.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from openapi_ui_bundles import swagger_ui

from .pages import templates

SWAGGER_UI_DIR = swagger_ui.static_path
SWAGGER_UI_URL = "/vendor/swagger-ui"

router = APIRouter()


@router.get("/docs", response_class=HTMLResponse, include_in_schema=False)
def swagger_ui_page(request: Request) -> HTMLResponse:
    """The interactive API reference, with every asset served by this app."""
    return templates.TemplateResponse(request, "docs.html", {"swagger_ui_url": SWAGGER_UI_URL})
