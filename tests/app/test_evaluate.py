"""POST /evaluate and /evaluate/upload: a placement scored without planning is the plan's own
"after"; a second placement beside it gives the moves and the speed-up."""

from __future__ import annotations

import io

import pytest
import torch
from fastapi.testclient import TestClient

from eplb_core.io import format_csv_matrix, map_to_pt

CLUSTER = {"num_replicas": 16, "num_groups": 4, "num_nodes": 2, "num_gpus": 8}


def trivial(layers: int) -> list[list[int]]:
    return [[slot % 12 for slot in range(16)]] * layers


def test_evaluating_a_plan_gives_the_rebalance_after(
    client: TestClient, readme_request: dict
) -> None:
    planned = client.post("/rebalance", json=readme_request).json()

    response = client.post(
        "/evaluate",
        json={
            "weight": readme_request["weight"],
            "placement": planned["plan"]["phy2log"],
            "compare": trivial(2),
            **CLUSTER,
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["placement"] == planned["after"]
    assert body["compare"] == planned["before"]
    assert body["mean_balancedness"] == planned["after"]["mean_balancedness"]
    assert body["moves"] == planned["moves"]
    assert body["speedup"] == pytest.approx(planned["speedup"])
    assert body["bound"] == planned["bound"]


def test_speedup_is_the_ratio_of_summed_busiest_gpus(client: TestClient) -> None:
    weight = [[6.0, 6.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    cluster = {"num_replicas": 4, "num_groups": 1, "num_nodes": 1, "num_gpus": 2}
    paired = [[0, 1, 2, 3], [0, 1, 2, 3]]  # layer 0: GPU loads 12 and 2
    spread = [[0, 2, 1, 3], [0, 1, 2, 3]]  # layer 0: 7 and 7

    body = client.post(
        "/evaluate", json={"weight": weight, "placement": spread, "compare": paired, **cluster}
    ).json()

    # A step's MoE time is the sum over layers of the busiest GPU: (12 + 2) / (7 + 2).
    assert body["speedup"] == pytest.approx(14 / 9)
    assert body["moves"] == {"per_layer": [2, 0], "total": 2}
    assert body["placement"]["gpu_load"] == [[7.0, 7.0], [2.0, 2.0]]
    alone = client.post("/evaluate", json={"weight": weight, "placement": spread, **cluster}).json()
    assert alone["compare"] is None and alone["moves"] is None and alone["speedup"] is None


def test_the_upload_form_reads_loads_and_placements_as_files(
    client: TestClient, readme_request: dict
) -> None:
    planned = client.post("/rebalance", json=readme_request).json()
    files = {
        "file": (
            "loads.csv",
            format_csv_matrix(torch.tensor(readme_request["weight"])),
            "text/csv",
        ),
        "placement": (
            "plan.pt",
            map_to_pt(torch.tensor(planned["plan"]["phy2log"])),
            "application/octet-stream",
        ),
        "compare": ("in-use.csv", format_csv_matrix(torch.tensor(trivial(2))), "text/csv"),
    }

    response = client.post(
        "/evaluate/upload", files=files, data={key: str(value) for key, value in CLUSTER.items()}
    )

    assert response.status_code == 200, response.text
    assert response.json()["placement"] == planned["after"]
    assert response.json()["moves"] == planned["moves"]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"placement": [[0] * 16] * 2}, "the placement holds no replica of expert 1 in layer 0"),
        ({"placement": trivial(3)}, "the placement has shape [3, 16]; this plan needs [2, 16]"),
        ({"compare": [[0, 1]] * 2}, "the placement has shape [2, 2]; this plan needs [2, 16]"),
        ({"num_gpus": 3}, "16 slots cannot be split evenly over 3 GPUs"),
        ({"placements": trivial(2)}, "body.placements: Extra inputs are not permitted"),
    ],
)
def test_bad_requests_are_refused_with_the_reason(
    client: TestClient, readme_request: dict, change: dict, expected: str
) -> None:
    body = {"weight": readme_request["weight"], "placement": trivial(2), **CLUSTER, **change}

    response = client.post("/evaluate", json=body)

    assert response.status_code == 422
    detail = response.json()["detail"]
    text = (
        detail
        if isinstance(detail, str)
        else "; ".join(".".join(map(str, item["loc"])) + ": " + item["msg"] for item in detail)
    )
    assert text.startswith(expected)


def test_unknown_form_fields_are_refused(client: TestClient, readme_request: dict) -> None:
    files = {
        "file": (
            "loads.csv",
            format_csv_matrix(torch.tensor(readme_request["weight"])),
            "text/csv",
        ),
        "placement": (
            "p.csv",
            io.BytesIO(format_csv_matrix(torch.tensor(trivial(2))).encode()),
            "text/csv",
        ),
    }

    response = client.post(
        "/evaluate/upload",
        files=files,
        data={**{k: str(v) for k, v in CLUSTER.items()}, "algoritm": "x"},
    )

    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "algoritm"]
