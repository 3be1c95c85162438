"""Application factory: ``create_app()`` assembles routers, middleware, error handlers and
static files; ``app`` is for uvicorn (``python -m app`` serves it with the settings)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import plotly
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from . import errors
from .config import Settings, get_settings
from .deps import FORM_OVERHEAD_BYTES, UploadCache, size_text
from .middleware import Guard
from .pool import WorkPool
from .routes import dashboard, docs, evaluate, export, health, pages, rebalance, replay, sweep

ROOT = Path(__file__).resolve().parent.parent
PLOTLY_JS_DIR = Path(plotly.__file__).parent / "package_data"

logger = logging.getLogger("app")


@asynccontextmanager
async def lifespan(application: FastAPI) -> AsyncIterator[None]:
    """Say what this server plans on and what it accepts; stop the pool at the end."""
    settings: Settings = application.state.settings
    logger.info(
        "EPLB service: planning on %s with %d workers (queue %d); uploads up to %d "
        "bytes; at most %d layers x %d experts, %d slots, %d replay windows",
        settings.torch_device,
        settings.workers,
        settings.queue,
        settings.max_upload_bytes,
        settings.max_layers,
        settings.max_experts,
        settings.max_replicas,
        settings.max_windows,
    )
    try:
        yield
    finally:
        application.state.pool.shutdown()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application: API routers, the dashboard page and its static files.

    ``settings`` defaults to the environment's (``get_settings()``); given, it replaces them
    for every route.
    """
    settings = get_settings() if settings is None else settings
    application = FastAPI(
        title="EPLB Dashboard",
        summary="Expert-parallelism load balancer for Mixture-of-Experts inference",
        version="0.2.0",
        lifespan=lifespan,
        docs_url=None,  # the docs router serves Swagger UI from local files
        redoc_url=None,
    )
    application.state.settings = settings
    application.state.pool = WorkPool(settings.workers, settings.queue)
    application.state.upload_cache = UploadCache(
        settings.upload_cache_bytes, settings.upload_cache_seconds
    )
    # A request carries a file at EPLB_MAX_UPLOAD_BYTES, with room for the form beside it.
    application.add_middleware(
        Guard,
        max_body_bytes=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
        limit_message=f"the request is larger than the {size_text(settings.max_upload_bytes)} "
        f"upload limit (EPLB_MAX_UPLOAD_BYTES)",
        body_timeout=settings.body_timeout,
    )
    errors.install(application)

    application.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    application.mount("/vendor/plotly", StaticFiles(directory=PLOTLY_JS_DIR), name="plotly")
    application.mount(
        docs.SWAGGER_UI_URL, StaticFiles(directory=docs.SWAGGER_UI_DIR), name="swagger-ui"
    )
    for router in (
        pages.router,
        dashboard.router,
        rebalance.router,
        replay.router,
        evaluate.router,
        sweep.router,
        export.router,
        health.router,
        docs.router,
    ):
        application.include_router(router)
    return application


app = create_app()
