"""POST /sweep and /sweep/upload: the advisor's points, equal to /rebalance and /replay for the
same parameters; progress streamed as NDJSON; refusals as a whole, within the limits."""

from __future__ import annotations

import io
import json

import pytest
import torch
from fastapi.testclient import TestClient

from eplb_core.synthetic import drifting_series
from tests.app.conftest import MakeClient

CLUSTER = {"num_groups": 4, "num_nodes": 2, "num_gpus": 4, "algorithm": "greedy"}


def series_file(series: torch.Tensor) -> dict:
    buffer = io.BytesIO()
    torch.save({"logical_count": series}, buffer)
    return {"file": ("dump.pt", buffer.getvalue(), "application/octet-stream")}


def test_points_equal_rebalance(client: TestClient, readme_request: dict) -> None:
    response = client.post(
        "/sweep", json={"weight": readme_request["weight"], **CLUSTER, "num_replicas": [12, 16, 24]}
    )

    assert response.status_code == 200, response.text
    points = response.json()["points"]
    assert [point["num_replicas"] for point in points] == [12, 16, 24]
    for point in points:
        planned = client.post(
            "/rebalance",
            json={
                "weight": readme_request["weight"],
                **CLUSTER,
                "num_replicas": point["num_replicas"],
            },
        ).json()
        assert point["mean_balancedness"] == planned["after"]["mean_balancedness"]
        assert point["next_window"] is None


def test_window_points_equal_replay(client: TestClient) -> None:
    series = drifting_series(24, layers=2, experts=12, seed=1)
    fields = {**CLUSTER, "num_replicas": ["16"], "windows": ["4", "6"]}

    response = client.post("/sweep/upload", files=series_file(series), data=fields)

    assert response.status_code == 200, response.text
    points = response.json()["points"]
    assert [(p["num_replicas"], p["window"]) for p in points] == [(16, 4), (16, 6)]
    for point in points:
        replayed = client.post(
            "/replay/upload",
            files=series_file(series),
            data={
                "num_replicas": "16",
                "num_groups": "4",
                "num_nodes": "2",
                "num_gpus": "4",
                "window": str(point["window"]),
            },
        ).json()
        assert point["next_window"] == replayed["strategies"]["greedy"]["mean_next_window"]


def test_progress_streams_then_the_result(client: TestClient) -> None:
    series = drifting_series(20, layers=2, experts=12, seed=2)

    with client.stream(
        "POST",
        "/sweep",
        json={"series": series.tolist(), **CLUSTER, "num_replicas": [12, 16], "windows": [5]},
        headers={"accept": "application/x-ndjson"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in response.iter_lines() if line]

    progress = [line["progress"] for line in lines[:-1]]
    assert progress[-1] == {"done": 8, "total": 8}  # per slot count: 1 plan + 3 windows
    assert [step["done"] for step in progress] == sorted(step["done"] for step in progress)
    assert [p["num_replicas"] for p in lines[-1]["result"]["points"]] == [12, 16]


def test_a_refusal_is_a_422_even_when_streaming(client: TestClient) -> None:
    response = client.post(
        "/sweep",
        json={"weight": [[1, 2, 3, 4]], **CLUSTER, "num_replicas": [4, 6]},
        headers={"accept": "application/x-ndjson"},
    )

    assert response.status_code == 422
    assert response.json() == {
        "detail": "num_replicas 6: 6 slots cannot be split evenly over 4 GPUs"
    }


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"num_replicas": []}, "body.num_replicas: List should have at least 1 item"),
        ({"weight": None}, "body: Value error, give the loads as weight (one window) or series"),
        ({"windows": [2]}, "windows are for a time series [steps, layers, experts]"),
        (
            {"num_replicas": [4, 8, 12, 16, 20]},
            "too many sweep points: 5; this server takes at most 4 (EPLB_MAX_SWEEP_POINTS)",
        ),
        ({"policies": ["fastest"]}, "body.policies.0: String should match pattern"),
    ],
)
def test_bad_sweeps_are_refused(make_client: MakeClient, body: dict, expected: str) -> None:
    client = make_client(max_sweep_points=4)
    request = {"weight": [[1, 2, 3, 4]], **CLUSTER, "num_replicas": [4, 8], **body}

    response = client.post("/sweep", json=request)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    text = (
        detail
        if isinstance(detail, str)
        else "; ".join(".".join(map(str, item["loc"])) + ": " + item["msg"] for item in detail)
    )
    assert text.startswith(expected)
