"""POST /export/physical_to_logical_map.{json,pt}: the files SGLang's --init-expert-location
reads, loaded back as SGLang loads them, and fed back as the placement in use."""

from __future__ import annotations

import io
import json

import pytest
import torch
from fastapi.testclient import TestClient

from .test_errors import message

PHY2LOG = [
    [5, 6, 5, 7, 8, 4, 3, 4, 10, 9, 10, 2, 0, 1, 11, 1],
    [7, 10, 6, 8, 6, 11, 8, 9, 2, 4, 5, 1, 5, 0, 3, 1],
]


def test_pt_export_loads_with_weights_only(client: TestClient) -> None:
    response = client.post("/export/physical_to_logical_map.pt", json={"phy2log": PHY2LOG})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/octet-stream"
    assert (
        response.headers["content-disposition"]
        == 'attachment; filename="physical_to_logical_map.pt"'
    )
    loaded = torch.load(io.BytesIO(response.content), weights_only=True)
    assert list(loaded) == ["physical_to_logical_map"]
    placement = loaded["physical_to_logical_map"]
    assert placement.dtype == torch.int64 and list(placement.shape) == [2, 16]
    assert placement.tolist() == PHY2LOG


def test_json_export_is_the_sglang_map(client: TestClient) -> None:
    response = client.post("/export/physical_to_logical_map.json", json={"phy2log": PHY2LOG})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert 'filename="physical_to_logical_map.json"' in response.headers["content-disposition"]
    assert json.loads(response.content) == {"physical_to_logical_map": PHY2LOG}


@pytest.mark.parametrize("suffix", ["json", "pt"])
def test_an_exported_plan_fed_back_as_the_placement_moves_nothing(
    client: TestClient, readme_request: dict, suffix: str
) -> None:
    plan = client.post("/rebalance", json=readme_request).json()["plan"]
    exported = client.post(
        f"/export/physical_to_logical_map.{suffix}", json={"phy2log": plan["phy2log"]}
    )
    fields = {key: str(value) for key, value in readme_request.items() if key != "weight"}
    loads = "\n".join(",".join(map(str, row)) for row in readme_request["weight"])

    response = client.post(
        "/rebalance/upload",
        data=fields,
        files={
            "file": ("loads.csv", loads, "text/csv"),
            "placement": (f"physical_to_logical_map.{suffix}", exported.content),
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["plan"]["phy2log"] == plan["phy2log"]
    assert body["moves"] == {"per_layer": [0, 0], "total": 0}
    assert body["before"] == body["after"]


@pytest.mark.parametrize(
    ("request_args", "status", "expected"),
    [
        pytest.param(
            {"json": {"phy2log": []}},
            422,
            "body.phy2log: List should have at least 1 item",
            id="empty",
        ),
        pytest.param(
            {"json": {"phy2log": [[0, 1], [2]]}},
            422,
            "body: Value error, phy2log rows "
            "must have the same length: row 1 has 1 value, row 0 has 2",
            id="ragged",
        ),
        pytest.param(
            {"json": {"phy2log": [[0, -1]]}},
            422,
            "body.phy2log.0.1: Input should be greater than or equal to 0",
            id="negative",
        ),
        pytest.param(
            {"json": {"placement": [[0, 1]]}}, 422, "body.phy2log: Field required", id="missing"
        ),
        pytest.param(
            {"data": {"phy2log": "0,1"}},
            415,
            "expected a body of type application/json, got 'application/x-www-form-urlencoded'",
            id="content-type",
        ),
    ],
)
@pytest.mark.parametrize("suffix", ["json", "pt"])
def test_export_errors(
    client: TestClient, suffix: str, request_args: dict, status: int, expected: str
) -> None:
    response = client.post(f"/export/physical_to_logical_map.{suffix}", **request_args)

    assert response.status_code == status, response.text
    assert message(response.json()).startswith(expected)
