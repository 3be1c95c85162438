"""Core test fixtures."""

from __future__ import annotations

import pytest

from tests.core.helpers import DEVICES


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Every test taking ``device`` runs on the CPU, and on CUDA where there is one."""
    return request.param
