"""Fixtures of the REST API tests: clients on fresh apps, and the published example."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.core.helpers import EXAMPLE

MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client() -> Iterator[MakeClient]:
    """``make_client(**settings)``: a client on an app with those settings (defaults otherwise,
    not the environment's)."""
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        client = TestClient(create_app(Settings(**overrides)))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    """A client on an app with the default settings."""
    return make_client()


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, like uvicorn."""
    return "asyncio"


@pytest.fixture(scope="session")
def readme_example() -> dict:
    """DeepSeek EPLB's README example: the matrix, the cluster, and the published plan."""
    return json.loads(EXAMPLE.read_text())


@pytest.fixture
def readme_request(readme_example: dict) -> dict:
    """The README example as a ``POST /rebalance`` body, for the greedy algorithm."""
    keys = ("weight", "num_replicas", "num_groups", "num_nodes", "num_gpus")
    return {**{key: readme_example[key] for key in keys}, "algorithm": "greedy"}
