"""``POST /replay`` (JSON) and ``POST /replay/upload`` (a load file): plan on each window of a
time series and score on the next, for "none", greedy and hybrid.

Both are plain ``def`` routes: FastAPI runs them in its thread pool, off the event loop.
"""

from __future__ import annotations

from typing import Annotated

import torch
from fastapi import APIRouter, Depends, Form

from ..config import Settings, get_settings
from ..schemas import ReplayParams, ReplayRequest, ReplayResponse
from ..service import replay_series
from ..uploads import read_loads_upload, read_placement_upload
from .rebalance import ERRORS, JSON_BODY, MULTIPART, LoadsFile, PlacementFile

router = APIRouter(tags=["replay"])


@router.post("/replay", responses=ERRORS, dependencies=JSON_BODY)
def replay_json(body: ReplayRequest,
                settings: Annotated[Settings, Depends(get_settings)]) -> ReplayResponse:
    """Replay a JSON time series ``series`` [steps][layers][experts] in windows of ``window``
    steps, starting from the placement in use ``current`` when given."""
    current = None if body.current is None else torch.tensor(body.current)
    return replay_series(torch.tensor(body.series, dtype=torch.float64), body.params(), settings,
                         current).as_dict()


@router.post("/replay/upload", responses=ERRORS, dependencies=MULTIPART)
def replay_upload(file: LoadsFile, params: Annotated[ReplayParams, Form()],
                  settings: Annotated[Settings, Depends(get_settings)],
                  placement: PlacementFile = None) -> ReplayResponse:
    """Replay an uploaded time series (3-D); the parameters are form fields."""
    return replay_series(read_loads_upload(file, settings.max_upload_bytes), params, settings,
                         read_placement_upload(placement, settings.max_upload_bytes)).as_dict()
