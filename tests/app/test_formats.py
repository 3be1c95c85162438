"""Load files through POST /rebalance/upload (and its first name /rebalance/csv): CSV, JSON and
.pt give the same plan, a time series is planned on the sum of its steps, and every file that
is not loads is refused saying what was found and what is expected."""

from __future__ import annotations

import io
import json

import pytest
import torch
from fastapi.testclient import TestClient

from eplb_core.io import format_csv_matrix

from .test_errors import message


class NotATensor:
    """A pickled object ``torch.load(weights_only=True)`` must refuse."""


def pt_bytes(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def fields(request: dict) -> dict[str, str]:
    return {key: str(value) for key, value in request.items() if key != "weight"}


@pytest.mark.parametrize("route", ["/rebalance/upload", "/rebalance/csv"])
def test_every_format_gives_the_json_plan(
    client: TestClient, readme_request: dict, route: str
) -> None:
    expected = client.post("/rebalance", json=readme_request).json()
    weight = readme_request["weight"]
    files = [
        ("loads.csv", format_csv_matrix(weight), "text/csv"),
        ("loads.json", json.dumps(weight), "application/json"),
        ("dump.json", json.dumps({"logical_count": weight, "rank": 0}), "application/json"),
        ("loads.pt", pt_bytes(torch.tensor(weight)), "application/octet-stream"),
        ("dump.pt", pt_bytes({"logical_count": torch.tensor(weight)}), "application/octet-stream"),
        ("no-suffix", pt_bytes(torch.tensor(weight)), "application/octet-stream"),
    ]

    for file in files:
        response = client.post(route, files={"file": file}, data=fields(readme_request))
        assert response.status_code == 200, (file[0], response.text)
        body = response.json()
        assert body["num_steps"] is None, file[0]
        for key in ("plan", "before", "after", "moves", "bound"):
            assert body[key] == expected[key], (file[0], key)


def test_a_time_series_is_planned_on_the_sum_of_its_steps(
    client: TestClient, readme_request: dict
) -> None:
    weight = torch.tensor(readme_request["weight"], dtype=torch.int64)
    steps = torch.stack([weight // 3, weight // 3, weight - 2 * (weight // 3)])  # sums to weight
    expected = client.post("/rebalance", json=readme_request).json()

    response = client.post(
        "/rebalance/upload",
        data=fields(readme_request),
        files={
            "file": (
                "expert_distribution_recorder_1700000000.pt",
                pt_bytes({"logical_count": steps}),
                "application/octet-stream",
            )
        },
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["num_steps"] == 3
    assert (body["num_layers"], body["num_experts"]) == (2, 12)
    assert body["plan"] == expected["plan"] and body["after"] == expected["after"]


def test_json_weight_is_one_window(client: TestClient, readme_request: dict) -> None:
    series = [readme_request["weight"]] * 2

    response = client.post("/rebalance", json={**readme_request, "weight": series})

    assert response.status_code == 422
    assert message(response.json()) == (
        "body.weight: Value error, weight is one window [layers][experts], got a deeper array: "
        "post a time series [steps][layers][experts] to /replay, or upload it to "
        "/rebalance/upload to plan on the sum of its steps"
    )


SHAPE = {"num_replicas": 4, "num_groups": 1, "num_nodes": 1, "num_gpus": 2}
EXPECTED_LOADS = (
    "[layers, experts] (one window) or [steps, layers, experts] (a time series), "
    "or {} with a 'logical_count' key holding one"
)

FILE_ERRORS = [
    pytest.param(
        ("dump.pt", pt_bytes({"rank": 0, "counts": torch.ones(1, 2)})),
        "the file 'dump.pt': found a dict with keys 'rank', 'counts'; expected a tensor "
        + EXPECTED_LOADS.format("a dict"),
        id="pt-dict-without-logical-count",
    ),
    pytest.param(
        ("dump.pt", pt_bytes(torch.ones(2))),
        "the file 'dump.pt': found a 1-D array "
        "of shape [2]; expected 2-D [layers, experts] (one window) or 3-D [steps, "
        "layers, experts] (a time series)",
        id="pt-one-dimensional",
    ),
    pytest.param(
        ("dump.pt", pt_bytes(NotATensor())),
        "the file 'dump.pt': the .pt file holds "
        "a pickled tests.app.test_formats.NotATensor, not a tensor; expected tensors, or "
        "dicts and lists of them, that torch.load(weights_only=True) accepts",
        id="pt-pickled-object",
    ),
    pytest.param(
        ("dump.pt", pt_bytes(torch.ones(1, 2))[:100]),
        "the file 'dump.pt': the file is not a .pt file torch.save wrote",
        id="pt-truncated",
    ),
    pytest.param(
        ("dump.pt", pt_bytes(torch.tensor([[1.0, -2.0]]))),
        "the file 'dump.pt': found "
        "a negative load (-2 at index [0, 1]); loads are token counts >= 0",
        id="pt-negative",
    ),
    pytest.param(
        ("dump.pt", pt_bytes(torch.ones(1, 2, dtype=torch.bool))),
        "the file 'dump.pt': found a torch.bool tensor; expected numbers",
        id="pt-bool",
    ),
    pytest.param(
        ("loads.json", '{"loads": [[1, 2]]}'),
        "the file 'loads.json': found an "
        "object with keys 'loads'; expected a nested list " + EXPECTED_LOADS.format("an object"),
        id="json-object-without-logical-count",
    ),
    pytest.param(
        ("loads.json", "[[1, 2], [3]]"),
        "the file 'loads.json': found a list that is not a rectangular array of numbers",
        id="json-ragged",
    ),
    pytest.param(
        ("loads.json", "[[1, NaN]]"),
        "the file 'loads.json': found NaN in the JSON; expected finite numbers",
        id="json-nan",
    ),
    pytest.param(
        ("loads.json", '"loads"'),
        "the file 'loads.json': found a value of type str; expected a nested list",
        id="json-string",
    ),
    pytest.param(
        ("loads.json", "[[1, 2]"),
        "the file 'loads.json': the file is not valid JSON",
        id="json-invalid",
    ),
]


@pytest.mark.parametrize(("file", "expected"), FILE_ERRORS)
def test_files_that_are_not_loads_say_what_was_found(
    client: TestClient, file: tuple, expected: str
) -> None:
    response = client.post("/rebalance/upload", files={"file": file}, data=fields(SHAPE))

    assert response.status_code == 422, response.text
    assert message(response.json()).startswith(expected)


def test_steps_that_sum_past_float32_are_refused(client: TestClient) -> None:
    steps = torch.full((2, 1, 2), 3e38, dtype=torch.float64)

    response = client.post(
        "/rebalance/upload", data=fields(SHAPE), files={"file": ("dump.pt", pt_bytes(steps))}
    )

    assert response.status_code == 422
    assert response.json() == {
        "detail": "layer 0 sums to 1.2e+39 tokens, more than a float32 "
        "can add up (1e+38); scale the loads down"
    }


@pytest.mark.parametrize(
    "content_type",
    ["application/octet-stream", "application/zip", "application/vnd.snesdev-page-table", ""],
)
def test_what_clients_call_a_pt_file_is_accepted(client: TestClient, content_type: str) -> None:
    """curl sends octet-stream; Python's requests and httpx guess from /etc/mime.types."""
    file = ("loads.pt", pt_bytes(torch.tensor([[1.0, 2.0]])), content_type)

    response = client.post("/rebalance/upload", files={"file": file}, data=fields(SHAPE))

    assert response.status_code == 200, response.text
