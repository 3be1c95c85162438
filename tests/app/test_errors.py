"""Bad input gets a 4xx whose message names the problem (and the row and column in a CSV file),
never a 500; an oversized upload is refused while it streams."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.deps import FORM_OVERHEAD_BYTES
from app.main import create_app
from tests.app.conftest import MakeClient

LIMITS = {"max_upload_bytes": 4096, "max_layers": 4, "max_experts": 16, "max_replicas": 64}
SHAPE = {"num_replicas": 4, "num_groups": 1, "num_nodes": 1, "num_gpus": 2}  # for 2 experts
OVER_THE_CAP = "1,2\n" * 1500  # 6000 bytes: the file is over 4 KiB, the request under 4 KiB + 1 MiB


def message(response_json: dict) -> str:
    """Our own errors are a string; FastAPI's validation errors a list of located messages."""
    detail = response_json["detail"]
    if isinstance(detail, str):
        return detail
    return "; ".join(".".join(map(str, item["loc"])) + ": " + item["msg"] for item in detail)


def upload(text: str | bytes, content_type: str = "text/csv", **params: object) -> dict:
    """Keyword arguments of a POST /rebalance/csv with this file and ``SHAPE`` updated by
    ``params`` (None drops a field)."""
    fields = {key: str(value) for key, value in {**SHAPE, **params}.items() if value is not None}
    return {"files": {"file": ("loads.csv", text, content_type)}, "data": fields}


def post_json(weight: object, **params: object) -> dict:
    """Keyword arguments of a POST /rebalance of this weight (NaN and infinity written as
    Python's json writes them) and ``SHAPE`` updated by ``params``."""
    body = json.dumps({"weight": weight, **SHAPE, **params})
    return {"content": body, "headers": {"content-type": "application/json"}}


CSV_ERRORS = [
    pytest.param(
        upload("1,2\n3,abc\n"),
        422,
        "the file 'loads.csv': row 2, column 2: 'abc' is not a number",
        id="non-numeric",
    ),
    pytest.param(
        upload("layer,e0,e1\nL0,1,2\n\nL1,x,4\n"),
        422,
        "the file 'loads.csv': row 4, column 2: 'x' is not a number",
        id="non-numeric-after-header-label-and-blank-line",
    ),
    pytest.param(
        upload("1,2\n3\n"),
        422,
        "the file 'loads.csv': row 2 has 1 column, expected 2 like row 1",
        id="ragged",
    ),
    pytest.param(
        upload(""), 422, "the file 'loads.csv': the file is empty: it has no rows", id="empty"
    ),
    pytest.param(
        upload("\n \n"),
        422,
        "the file 'loads.csv': the file is empty: it has no rows",
        id="blank-lines-only",
    ),
    pytest.param(
        upload("e0,e1\n"),
        422,
        "the file 'loads.csv': the file has a header row (row 1) but no data rows",
        id="header-only",
    ),
    pytest.param(
        upload("1,2\nnan,4\n"),
        422,
        "the file 'loads.csv': row 2, column 1: 'nan' is not a finite number",
        id="nan",
    ),
    pytest.param(
        upload("1,inf\n3,4\n"),
        422,
        "the file 'loads.csv': row 1, column 2: 'inf' is not a finite number",
        id="inf",
    ),
    pytest.param(
        upload("1,2\n3,-4\n"),
        422,
        "the file 'loads.csv': row 2, column 2: '-4' is negative; loads are token counts >= 0",
        id="negative",
    ),
    pytest.param(
        upload("1,\n3,4\n"),
        422,
        "the file 'loads.csv': row 1, column 2: the cell is empty",
        id="empty-cell",
    ),
    pytest.param(
        upload(b"1,2\n3,\xe9\n"),
        422,
        "the file 'loads.csv': the file is not UTF-8 text (byte 6 is 0xe9); expected "
        "CSV, JSON or a .pt file",
        id="not-utf8",
    ),
    pytest.param(
        upload("1,2\n" * 5),
        422,
        "the file 'loads.csv': too many layers: 5; this server takes at most 4 (EPLB_MAX_LAYERS)",
        id="too-many-layers",
    ),
    pytest.param(
        upload(",".join(["1"] * 17), num_replicas=18),
        422,
        "the file 'loads.csv': too many experts: 17; this server takes at most 16 "
        "(EPLB_MAX_EXPERTS)",
        id="too-many-experts",
    ),
    pytest.param(
        upload("1,2\n", num_replicas=66),
        422,
        "too many slots (num_replicas): 66; this server takes at most 64 (EPLB_MAX_REPLICAS)",
        id="too-many-slots",
    ),
    pytest.param(
        upload(OVER_THE_CAP),
        413,
        "the file 'loads.csv' is larger than the 4 KiB upload limit (EPLB_MAX_UPLOAD_BYTES)",
        id="file-over-the-cap",
    ),
    pytest.param(
        upload("1,2\n" * 300000),
        413,
        "the request is larger than the 4 KiB upload limit (EPLB_MAX_UPLOAD_BYTES)",
        id="request-over-the-cap",
    ),
    pytest.param(
        upload("1,2\n", content_type="image/png"),
        415,
        "the file 'loads.csv' has content type 'image/png'; expected CSV, JSON or a .pt file",
        id="file-content-type",
    ),
    pytest.param(
        {"json": {"weight": [[1, 2]], **SHAPE}},
        415,
        "expected a body of type multipart/form-data, got 'application/json'",
        id="request-content-type",
    ),
    pytest.param(
        upload("1,2\n", num_replicas=1, num_gpus=1),
        422,
        "1 slots cannot hold 2 experts: num_replicas must be at least the number of experts",
        id="replicas-below-experts",
    ),
    pytest.param(
        upload("1,2\n", num_replicas=3),
        422,
        "3 slots cannot be split evenly over 2 GPUs",
        id="replicas-not-divisible-by-gpus",
    ),
    pytest.param(
        upload("1,2\n", num_groups=2, num_nodes=2, num_gpus=1, num_replicas=2),
        422,
        "1 GPUs cannot be split evenly over 2 nodes",
        id="gpus-not-divisible-by-nodes",
    ),
    pytest.param(
        upload("1,2\n", num_groups=3),
        422,
        "2 experts cannot be split evenly into 3 groups",
        id="experts-not-divisible-by-groups",
    ),
    pytest.param(
        upload("1,2\n", num_gpus=None), 422, "body.num_gpus: Field required", id="missing-field"
    ),
    pytest.param(
        upload("1,2\n", num_nodes=0),
        422,
        "body.num_nodes: Input should be greater than 0",
        id="non-positive-count",
    ),
    pytest.param(
        upload("1,2\n", algorithm="magic"),
        422,
        "body.algorithm: Input should be 'hybrid' or 'greedy'",
        id="unknown-algorithm",
    ),
]

JSON_ERRORS = [
    pytest.param(
        post_json([[1, "abc"]]),
        422,
        "body.weight.0.1: Input should be a valid number",
        id="non-numeric",
    ),
    pytest.param(
        post_json([[1, 2], [3]]),
        422,
        "body: Value error, weight rows must have the same length: row 1 has 1 value, row 0 has 2",
        id="ragged",
    ),
    pytest.param(
        post_json([]), 422, "body.weight: List should have at least 1 item", id="no-layers"
    ),
    pytest.param(
        post_json([[]]), 422, "body.weight.0: List should have at least 1 item", id="no-experts"
    ),
    pytest.param(
        post_json([[1, 2], [float("nan"), 4]]),
        422,
        "body.weight.1.0: Input should be a finite number",
        id="nan",
    ),
    pytest.param(
        post_json([[1, float("inf")]]),
        422,
        "body.weight.0.1: Input should be a finite number",
        id="inf",
    ),
    pytest.param(
        post_json([[1, -4]]),
        422,
        "body.weight.0.1: Input should be greater than or equal to 0",
        id="negative",
    ),
    pytest.param(
        post_json([[1, 2]] * 5),
        422,
        "too many layers: 5; this server takes at most 4 (EPLB_MAX_LAYERS)",
        id="too-many-layers",
    ),
    pytest.param(
        post_json([[1] * 17], num_replicas=18),
        422,
        "too many experts: 17; this server takes at most 16 (EPLB_MAX_EXPERTS)",
        id="too-many-experts",
    ),
    pytest.param(
        post_json([[1, 2]] * 200000),
        413,
        "the request is larger than the 4 KiB upload limit (EPLB_MAX_UPLOAD_BYTES)",
        id="over-the-cap",
    ),
    pytest.param(
        {"content": "weight=1", "headers": {"content-type": "text/plain"}},
        415,
        "expected a body of type application/json, got 'text/plain'",
        id="content-type",
    ),
    pytest.param(
        {"content": '{"weight": [[1, 2]', "headers": {"content-type": "application/json"}},
        400,
        "the body is not valid JSON: Invalid JSON: EOF while parsing a list",
        id="malformed-json",
    ),
    pytest.param(
        post_json([[1, 2]], num_replicas=1, num_gpus=1),
        422,
        "1 slots cannot hold 2 experts: num_replicas must be at least the number of experts",
        id="replicas-below-experts",
    ),
    pytest.param(
        post_json([[1, 2]], num_replicas=3),
        422,
        "3 slots cannot be split evenly over 2 GPUs",
        id="replicas-not-divisible-by-gpus",
    ),
    pytest.param(
        post_json([[1, 2]], num_groups=2, num_nodes=2, num_gpus=1, num_replicas=2),
        422,
        "1 GPUs cannot be split evenly over 2 nodes",
        id="gpus-not-divisible-by-nodes",
    ),
    pytest.param(
        post_json([[1, 2]], num_groups=3),
        422,
        "2 experts cannot be split evenly into 3 groups",
        id="experts-not-divisible-by-groups",
    ),
    pytest.param(
        post_json([[1, 2]], seed=-1),
        422,
        "body.seed: Input should be greater than or equal to 0",
        id="negative-seed",
    ),
]


@pytest.fixture
def limited(make_client: MakeClient) -> TestClient:
    """A client on an app with small limits, so that tests can pass them."""
    return make_client(**LIMITS)


@pytest.mark.parametrize(("request_args", "status", "expected"), CSV_ERRORS)
def test_csv_upload_errors(
    limited: TestClient, request_args: dict, status: int, expected: str
) -> None:
    response = limited.post("/rebalance/csv", **request_args)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message(response.json()).startswith(expected)


@pytest.mark.parametrize(("request_args", "status", "expected"), JSON_ERRORS)
def test_json_errors(limited: TestClient, request_args: dict, status: int, expected: str) -> None:
    response = limited.post("/rebalance", **request_args)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert message(response.json()).startswith(expected)


def test_the_server_still_plans_after_refusing(limited: TestClient) -> None:
    """A refused request leaves nothing behind: the next good one is answered in full."""
    assert limited.post("/rebalance/csv", **upload(OVER_THE_CAP)).status_code == 413
    assert limited.post("/rebalance", **post_json([[1, -4]])).status_code == 422

    response = limited.post("/rebalance/csv", **upload("1,2\n3,4\n", algorithm="greedy"))

    assert response.status_code == 200, response.text
    assert response.json()["num_layers"] == 2


@pytest.mark.anyio
async def test_oversized_upload_is_refused_while_it_streams() -> None:
    """A chunked upload with no Content-Length: 413 once the bytes pass the cap, the rest of
    the stream never read."""
    cap, chunk = 64 * 1024, b"1,2\n" * 4096  # 16 KiB chunks, 200 of them (3.2 MiB) on offer
    app = create_app(Settings(max_upload_bytes=cap))
    head = (
        b'--B\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
        b"Content-Type: text/csv\r\n\r\n"
    )
    messages = [head] + [chunk] * 200
    read, sent = 0, []

    async def receive() -> dict:
        nonlocal read
        read += 1
        return {
            "type": "http.request",
            "body": messages[read - 1],
            "more_body": read < len(messages),
        }

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/rebalance/csv",
        "raw_path": b"/rebalance/csv",
        "root_path": "",
        "query_string": b"",
        "server": ("test", 80),
        "client": ("test", 1),
        "headers": [(b"content-type", b"multipart/form-data; boundary=B")],
    }
    await app(scope, receive, send)

    assert sent[0]["status"] == 413
    assert json.loads(sent[1]["body"])["detail"] == (
        "the request is larger than the 64 KiB upload limit (EPLB_MAX_UPLOAD_BYTES)"
    )
    # the head, the cap plus the room for form fields and a placement, one chunk more
    assert read <= 1 + (cap + FORM_OVERHEAD_BYTES) // len(chunk) + 1


def test_a_plan_too_large_to_hold_is_a_422(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("eplb_core.plan.MAX_LOG2PHY_ENTRIES", 4 * 8 * 20)
    weight = [[1, 1, 1, 1e6, 1, 1, 1, 1]] * 4
    response = client.post(
        "/rebalance",
        json={"weight": weight, "num_replicas": 32, "num_groups": 1, "num_nodes": 1, "num_gpus": 4},
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith(
        "the plan gives one expert 25 replicas, so log2phy would hold 4 x 8 x 25 entries"
    )


def test_an_internal_error_is_a_logged_500_not_a_422(
    readme_request: dict, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug inside the core (here: a plan that breaks its own invariants) is the server's
    fault: a 500 with a logged traceback, never a 4xx that blames the input."""
    from eplb_core import plan as core_plan
    from eplb_core.errors import InvariantError

    def broken(self: object) -> None:
        raise InvariantError("the plan leaves an expert without a replica")

    monkeypatch.setattr(core_plan.Plan, "check", broken)
    client = TestClient(create_app(Settings()), raise_server_exceptions=False)

    with caplog.at_level("ERROR", logger="app"):
        response = client.post("/rebalance", json=readme_request)

    assert response.status_code == 500
    assert response.json()["detail"].startswith("internal error")
    assert "InvariantError" in caplog.text and "Traceback" in caplog.text
