"""Application factory: ``create_app()`` assembles routers and static files; ``app`` is for uvicorn."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import plotly
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from eplb_core.errors import EPLBError

from .config import Settings, get_settings
from .uploads import RequestSizeLimit

ROOT = Path(__file__).resolve().parent.parent
PLOTLY_JS_DIR = Path(plotly.__file__).parent / "package_data"

logger = logging.getLogger("app")


@asynccontextmanager
async def lifespan(application: FastAPI) -> AsyncIterator[None]:
    """Say on start-up what this server plans on and what it accepts."""
    settings: Settings = application.state.settings
    logger.info("EPLB service: planning on %s; uploads up to %d bytes; at most %d layers x "
                "%d experts, %d slots, %d replay windows", settings.torch_device,
                settings.max_upload_bytes, settings.max_layers, settings.max_experts,
                settings.max_replicas, settings.max_windows)
    yield


async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 listing where and why the request failed validation, without echoing the input.

    FastAPI's default handler echoes each bad value, which cannot be written as JSON when it is
    a NaN or infinity; it also repeats a whole form, uploaded file included, for a missing field.
    """
    detail = [{"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
              for item in error.errors()]
    return JSONResponse({"detail": detail}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def refused(request: Request, error: EPLBError) -> JSONResponse:
    """422 with the core's message: input the core refuses (bad loads, cluster, placement,
    option, or a request over a limit)."""
    return JSONResponse({"detail": str(error)}, status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application: API routers, the dashboard page and its static files.

    ``settings`` defaults to the environment's (``get_settings()``); given, it replaces them
    for every route.
    """
    from .routes import dashboard, docs, export, health, pages, rebalance, replay

    application = FastAPI(
        title="EPLB Dashboard",
        summary="Expert-parallelism load balancer for Mixture-of-Experts inference",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # the docs router serves Swagger UI from local files
        redoc_url=None,
        exception_handlers={RequestValidationError: validation_error, EPLBError: refused},
    )
    if settings is None:
        settings = get_settings()
    else:
        application.dependency_overrides[get_settings] = lambda: settings
    application.state.settings = settings
    application.add_middleware(RequestSizeLimit, max_bytes=settings.max_upload_bytes)

    application.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    application.mount("/vendor/plotly", StaticFiles(directory=PLOTLY_JS_DIR), name="plotly")
    application.mount(docs.SWAGGER_UI_URL, StaticFiles(directory=docs.SWAGGER_UI_DIR),
                      name="swagger-ui")
    application.include_router(pages.router)
    application.include_router(dashboard.router)
    application.include_router(rebalance.router)
    application.include_router(replay.router)
    application.include_router(export.router)
    application.include_router(health.router)
    application.include_router(docs.router)
    return application


app = create_app()
