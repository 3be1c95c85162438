"""Application factory: ``create_app()`` assembles routers and static files; ``app`` is for uvicorn."""

from __future__ import annotations

from pathlib import Path

import plotly
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

ROOT = Path(__file__).resolve().parent.parent
PLOTLY_JS_DIR = Path(plotly.__file__).parent / "package_data"


def create_app() -> FastAPI:
    """Build the application: API routers, the dashboard page and its static files."""
    from .routes import pages

    application = FastAPI(title="EPLB Dashboard")
    application.mount("/static", StaticFiles(directory=ROOT / "static"), name="static")
    application.mount("/vendor/plotly", StaticFiles(directory=PLOTLY_JS_DIR), name="plotly")
    application.include_router(pages.router)
    return application


app = create_app()
